"""The aufs graphdriver: a layer is a branch, a mount is the union of a layer's branches.

Layout under `<root>/aufs`, as Docker's aufs driver had it:
  diff/<id>    the layer's own files (its branch), whiteouts included
  layers/<id>  its ancestors, nearest first, one a line; written last, so it marks a
               complete layer
  mnt/<id>     where the union is mounted
  lazy/<id>    a lazy layer's state (graphdrivers/lazy): its files arrive from a registry
               when first read; gone once the layer is complete and the engine settled it
The union is the kernel's aufs when the kernel has it, otherwise strata's FUSE union
filesystem (`aufs.backend=kernel|fuse`); status() and metadata() always say which.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from .. import archive, fsmagic, mountutil, naivediff, whiteouts
from ..changes import Change
from ..driver import Driver, validate_id
from ..errors import ChainTooDeep, DriverError, LayerNotFound
from ..lazy import layer as lazylayer
from ..lazy.layer import DEFAULT_TIMEOUT, LazyLayer
from ..lazy.source import LazyBlob
from ..options import DriverOptions, option
from ..units import bool_parser, choice, human_size, seconds_parser
from .backend import BACKENDS, FUSE_SERVERS, UnionBackend, choose
from .fuse_backend import FuseBackend, detach, is_dead_mount
from .linkup import copy_up_link_target
from .native_changes import branch_changes
from .unionfs.tree import Union

log = logging.getLogger(__name__)

REMOVING = "-removing"
PROBE = ".passthrough-probe"  # not a layer id (those never start with a dot)


@dataclass(frozen=True)
class AufsOptions(DriverOptions):
    backend: str | None = option("aufs.backend", choice("aufs.backend", BACKENDS), None)
    fuse_passthrough: bool = option("aufs.fuse_passthrough", bool_parser("aufs.fuse_passthrough"), True)
    fuse_server: str = option("aufs.fuse_server", choice("aufs.fuse_server", FUSE_SERVERS), "direct")
    lazy_timeout: float = option("aufs.lazy_timeout", seconds_parser("aufs.lazy_timeout"), DEFAULT_TIMEOUT)
    lazy_prefetch: bool = option("aufs.lazy_prefetch", bool_parser("aufs.lazy_prefetch"), True)


class AufsDriver(Driver):
    name = "aufs"
    options_type = AufsOptions
    options: AufsOptions

    def __init__(self, home: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        opts = self.options
        self.backend: UnionBackend = choose(
            opts.backend,
            passthrough=opts.fuse_passthrough,
            server=opts.fuse_server,
            given=opts.given,
            lazy_timeout=opts.lazy_timeout,
            lazy_prefetch=opts.lazy_prefetch,
        )
        self.max_depth = self.backend.max_branches
        for sub in ("diff", "layers", "mnt", "lazy"):
            os.makedirs(os.path.join(home, sub), mode=0o700, exist_ok=True)
        self._recover()

    # -- layout ------------------------------------------------------------------------

    def _path(self, kind: str, layer_id: str) -> str:
        return os.path.join(self.home, kind, layer_id)

    def ancestors(self, layer_id: str) -> list[str]:
        """The layer's ancestors, nearest first."""
        validate_id(layer_id)
        try:
            with open(self._path("layers", layer_id), encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            raise LayerNotFound(layer_id) from None

    def branches(self, layer_id: str) -> list[str]:
        return [self._path("diff", i) for i in [layer_id, *self.ancestors(layer_id)]]

    def _recover(self) -> None:
        """Finish removals a crash interrupted; detach mounts whose FUSE process died."""
        for sub in ("layers", "diff", "mnt", "lazy"):
            for name in os.listdir(os.path.join(self.home, sub)):
                if name.endswith(REMOVING):
                    path = os.path.join(self.home, sub, name)
                    log.info("aufs: finishing the interrupted removal of %s", path)
                    if sub == "mnt" and mountutil.is_mountpoint(path):
                        detach(path)
                    _delete(path)
        for name in os.listdir(self._path("lazy", "")):
            # lazy state made by a create that died before the layer was (layers/<id> comes last)
            if not name.endswith(REMOVING) and (name.endswith(".tmp") or not self._exists(name)):
                log.info("aufs: removing the lazy state of %s, a layer whose creation was interrupted", name)
                _delete(self._path("lazy", name))
        for point in FuseBackend.recover(os.path.join(self.home, "mnt")):
            log.info("aufs: detached %s, whose FUSE process had died", point)

    # -- hooks -------------------------------------------------------------------------

    def _exists(self, id: str) -> bool:
        return os.path.exists(self._path("layers", id))

    def _create(self, id: str, parent: str | None, *, size: int | None, read_write: bool) -> None:
        ancestors = [parent, *self.ancestors(parent)] if parent else []
        if self.max_depth is not None and len(ancestors) + 1 > self.max_depth:
            raise ChainTooDeep(
                f"cannot create layer {id!r}: a chain of {len(ancestors) + 1} layers exceeds the "
                f"{self.max_depth} branches kernel aufs can stack (CONFIG_AUFS_BRANCH_MAX_127)"
            )
        made = []
        try:
            for sub in ("diff", "mnt"):
                os.mkdir(self._path(sub, id), 0o755)
                made.append(self._path(sub, id))
            os.chmod(self._path("diff", id), 0o755)  # exact, whatever the umask
            tmp = self._path("layers", f".{id}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(f"{a}\n" for a in ancestors))
            os.rename(tmp, self._path("layers", id))
        except BaseException:
            for path in made:
                _delete(path)
            try:
                os.unlink(self._path("layers", f".{id}.tmp"))
            except FileNotFoundError:
                pass
            raise

    def _remove(self, id: str) -> None:
        mnt = self._path("mnt", id)
        if mountutil.is_mountpoint(mnt):  # left by a crashed process
            log.info("aufs: detaching the stale mount of layer %s before removing it", id)
            detach(mnt)
        # renaming first makes the removal atomic to readers; startup deletes leftovers
        renamed = []
        for sub in ("layers", "diff", "mnt", "lazy"):
            src = self._path(sub, id)
            if os.path.lexists(src):
                os.rename(src, src + REMOVING)
                renamed.append(src + REMOVING)
        for path in renamed:
            _delete(path)

    def _mount(self, id: str, mount_label: str) -> str:
        mnt = self._path("mnt", id)
        if mountutil.is_mountpoint(mnt):
            log.info("aufs: detaching a stale mount of layer %s left by an earlier instance", id)
            detach(mnt)  # ours must be the live one
        self.backend.mount(mnt, self.branches(id), mount_label, self._lazy_branches(id))
        return mnt

    def _unmount(self, id: str) -> None:
        self.backend.unmount(self._path("mnt", id))

    def _disown(self, id: str, path: str) -> None:
        self.backend.forget(path)

    def _cleanup(self) -> None:
        self.backend.close()
        kept = self.disowned_mounts()  # detached containers still run in these
        for point in mountutil.mounts_under(os.path.join(self.home, "mnt")):
            if point != os.path.realpath(os.path.join(self.home, "mnt")) and point not in kept:
                detach(point)

    # -- lazy layers -------------------------------------------------------------------

    def lazy_unsupported(self) -> str | None:
        if not self.backend.serves_lazy:
            return "kernel aufs cannot fetch a layer's files on first read (use aufs.backend=fuse)"
        return None

    def _create_lazy(self, id: str, parent: str | None, blob: LazyBlob) -> int:
        """The lazy state first, then the layer, then its skeleton: every regular file
        with its size but no data yet, applied by the confined layer applier from a tar
        made of the TOC (so names, links and whiteouts follow the same rules as a full
        pull). A crash anywhere leaves a layer the engine's repair removes."""
        state = self._path("lazy", id)
        lazylayer.prepare(state, blob.source, blob.toc_json, blob.tail)
        try:
            self._create(id, parent, size=None, read_write=False)
            tar, sizes = lazylayer.skeleton(blob.toc_json, blob.tail)
            self.apply_diff(id, parent, tar)
            lazylayer.give_sizes(self._path("diff", id), sizes)
        except BaseException:
            self._remove(id)
            raise
        return sum(sizes.values())

    def _lazy_layer(self, id: str) -> LazyLayer | None:
        if not os.path.isdir(self._path("lazy", id)):
            return None
        return LazyLayer(self._path("lazy", id), self._path("diff", id), timeout=self.options.lazy_timeout,
                         layer_id=id)

    def _lazy_branches(self, id: str) -> dict[int, str]:
        """Branch index -> state directory of every lazy layer of the union (bad ones too:
        their reads must fail, not show holes); complete ones are ordinary branches."""
        found = {}
        for i, layer in enumerate([id, *self.ancestors(id)]):
            state = self._path("lazy", layer)
            if os.path.isdir(state) and lazylayer.read_state(state)["state"] != lazylayer.COMPLETE:
                found[i] = state
        return found

    def lazy_status(self, id: str) -> dict[str, object] | None:
        layer = self._lazy_layer(validate_id(id))
        if layer is None:
            return None
        try:
            return layer.status()
        finally:
            layer.close()

    def lazy_complete(self, id: str) -> str | None:
        layer = self._lazy_layer(validate_id(id))
        if layer is None:
            return None
        try:
            state = layer.fetch_all()
        except OSError as exc:
            raise DriverError(f"lazy layer {id[:12]} cannot be completed: {exc.strerror or exc}") from None
        finally:
            layer.close()
        if state["state"] != lazylayer.COMPLETE:
            raise DriverError(f"lazy layer {id[:12]} is bad: {state.get('reason', '')}")
        return layer.blob_path()

    def lazy_forget(self, id: str) -> None:
        state = self._path("lazy", validate_id(id))
        if os.path.isdir(state) and lazylayer.read_state(state)["state"] == lazylayer.COMPLETE:
            os.rename(state, state + REMOVING)
            _delete(state + REMOVING)

    def _whole(self, id: str) -> None:
        """A native diff reads the branch itself: a lazy layer must have all its data first."""
        if os.path.isdir(self._path("lazy", id)):
            self.lazy_complete(id)

    # -- facts -------------------------------------------------------------------------

    def backend_description(self) -> str:
        return self.backend.describe(self._path("mnt", PROBE))

    def status(self) -> list[tuple[str, str]]:
        layers = [n for n in os.listdir(os.path.join(self.home, "layers")) if not n.startswith(".")]
        depth = (
            f"{self.max_depth} branches (kernel aufs)"
            if self.max_depth is not None
            else "none (FUSE backend; tested to 130 layers)"
        )
        stale = [p for p in mountutil.mounts_under(os.path.join(self.home, "mnt")) if is_dead_mount(p)]
        return [
            ("Root Dir", self.home),
            ("Backing Filesystem", fsmagic.fs_name(self.home)),
            ("Backend", self.backend_description()),
            ("Dirs", str(len(layers))),
            ("Depth Limit", depth),
            ("Stale Mounts", str(len(stale))),
            *self._lazy_rows(),
        ]

    def _lazy_rows(self) -> list[tuple[str, str]]:
        """One row per lazy layer: state, files and bytes fetched of the total."""
        rows = []
        for name in sorted(os.listdir(self._path("lazy", ""))):
            if name.endswith((".tmp", REMOVING)) or not self._exists(name):
                continue
            st = self.lazy_status(name)
            if st is not None:
                rows.append((f"Lazy Layer {name[:12]}", _progress(st)))
        return [("Lazy Layers", str(len(rows))), *rows]

    def metadata(self, id: str) -> dict[str, str]:
        ancestors = self.ancestors(id)
        return {
            "Backend": self.backend.name,
            "DiffDir": self._path("diff", id),
            "MergedDir": self._path("mnt", id),
            "Parent": ancestors[0] if ancestors else "",
            "Depth": str(len(ancestors) + 1),
            "DepthLimit": str(self.max_depth) if self.max_depth is not None else "none",
            **({"Lazy": _progress(st)} if (st := self.lazy_status(id)) is not None else {}),
        }

    # -- native diff: a layer's branch already is its diff ----------------------------

    def _is_own_parent(self, id: str, parent: str | None) -> bool:
        ancestors = self.ancestors(id)
        return parent == (ancestors[0] if ancestors else None)

    def changes(self, id: str, parent: str | None = None) -> list[Change]:
        if not self._is_own_parent(id, parent):
            return super().changes(id, parent)
        self._whole(id)
        lower = [self._path("diff", a) for a in self.ancestors(id)]
        return branch_changes(self._path("diff", id), lower)

    def diff(self, id: str, parent: str | None = None) -> IO[bytes]:
        if not self._is_own_parent(id, parent):
            return super().diff(id, parent)
        self._whole(id)
        return archive.export_dir(self._path("diff", id), whiteouts=whiteouts.AUFS)

    def diff_size(self, id: str, parent: str | None = None) -> int:
        if not self._is_own_parent(id, parent):
            return super().diff_size(id, parent)
        self._whole(id)
        return archive.dir_diff_size(self._path("diff", id), whiteouts=whiteouts.AUFS)

    def apply_diff(self, id: str, parent: str | None, stream: IO[bytes]) -> int:
        """Extract straight into the branch, keeping `.wh.` entries as aufs whiteouts.

        A hard link to a file of a lower layer copies that file up first, as the union
        would on `link`. A mounted layer is written through its union instead (whiteouts delete),
        so the union's index sees every change.
        """
        if not self.exists(id):
            raise LayerNotFound(id)
        if self.refcount(id):
            with self._mounted(id) as path:
                assert path is not None
                return naivediff.apply(path, stream)
        branch = self._path("diff", id)
        if not self.ancestors(id):  # nothing below to hide: a whiteout is just a deletion
            return archive.apply_layer(branch, stream, whiteouts=whiteouts.DELETE)

        def copy_up(target: str) -> list[str]:
            # A fresh (lazily indexed) union: the branch has changed since the apply began.
            lazy = {i: layer for i, a in enumerate(self.ancestors(id), 1) if (layer := self._lazy_layer(a))}
            made = copy_up_link_target(Union(self.branches(id), lazy), branch, target)
            return [os.path.relpath(path, branch) for path in made]

        return archive.apply_layer(branch, stream, whiteouts=whiteouts.AUFS, copy_up=copy_up)


def _progress(st: dict[str, object]) -> str:
    text = (f"{st['State']}: {st['FilesFetched']}/{st['FilesTotal']} files, "
            f"{human_size(int(st['BytesFetched']))}/{human_size(int(st['BytesTotal']))} fetched")  # type: ignore[call-overload]
    return f"{text} ({st['Reason']})" if st.get("Reason") else text


def _delete(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)

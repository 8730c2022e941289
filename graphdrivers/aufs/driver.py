"""The aufs graphdriver: a layer is a branch, a mount is the union of a layer's branches.

Layout under `<root>/aufs`, as Docker's aufs driver had it:
  diff/<id>    the layer's own files (its branch), whiteouts included
  layers/<id>  its ancestors, nearest first, one a line; written last, so it marks a
               complete layer
  mnt/<id>     where the union is mounted
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
from ..errors import ChainTooDeep, LayerNotFound
from ..options import DriverOptions, option
from ..units import bool_parser, choice
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


class AufsDriver(Driver):
    name = "aufs"
    options_type = AufsOptions
    options: AufsOptions

    def __init__(self, home: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        opts = self.options
        self.backend: UnionBackend = choose(
            opts.backend, passthrough=opts.fuse_passthrough, server=opts.fuse_server, given=opts.given
        )
        self.max_depth = self.backend.max_branches
        for sub in ("diff", "layers", "mnt"):
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
        for sub in ("layers", "diff", "mnt"):
            for name in os.listdir(os.path.join(self.home, sub)):
                if name.endswith(REMOVING):
                    path = os.path.join(self.home, sub, name)
                    log.info("aufs: finishing the interrupted removal of %s", path)
                    if sub == "mnt" and mountutil.is_mountpoint(path):
                        detach(path)
                    _delete(path)
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
        for sub in ("layers", "diff", "mnt"):
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
        self.backend.mount(mnt, self.branches(id), mount_label)
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
        ]

    def metadata(self, id: str) -> dict[str, str]:
        ancestors = self.ancestors(id)
        return {
            "Backend": self.backend.name,
            "DiffDir": self._path("diff", id),
            "MergedDir": self._path("mnt", id),
            "Parent": ancestors[0] if ancestors else "",
            "Depth": str(len(ancestors) + 1),
            "DepthLimit": str(self.max_depth) if self.max_depth is not None else "none",
        }

    # -- native diff: a layer's branch already is its diff ----------------------------

    def _is_own_parent(self, id: str, parent: str | None) -> bool:
        ancestors = self.ancestors(id)
        return parent == (ancestors[0] if ancestors else None)

    def changes(self, id: str, parent: str | None = None) -> list[Change]:
        if not self._is_own_parent(id, parent):
            return super().changes(id, parent)
        lower = [self._path("diff", a) for a in self.ancestors(id)]
        return branch_changes(self._path("diff", id), lower)

    def diff(self, id: str, parent: str | None = None) -> IO[bytes]:
        if not self._is_own_parent(id, parent):
            return super().diff(id, parent)
        return archive.export_dir(self._path("diff", id), whiteouts=whiteouts.AUFS)

    def diff_size(self, id: str, parent: str | None = None) -> int:
        if not self._is_own_parent(id, parent):
            return super().diff_size(id, parent)
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
            made = copy_up_link_target(Union(self.branches(id)), branch, target)
            return [os.path.relpath(path, branch) for path in made]

        return archive.apply_layer(branch, stream, whiteouts=whiteouts.AUFS, copy_up=copy_up)


def _delete(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)

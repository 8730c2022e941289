"""The overlay2 graphdriver: kernel overlayfs, Docker's layout, the kernel union's costs.

Layout under `<root>/overlay2/`:
  <id>/diff       the layer's own files (overlay's upper dir; lower dir of its children)
  <id>/link       the layer's 26-character short name
  <id>/lower      `l/<short>:l/<short>...`, its ancestors nearest first (absent: no parent)
  <id>/work       overlay's work dir, <id>/merged the mount point (only with a parent)
  <id>/committed  present once a child exists: the layer is then mounted read-only
  backingFsBlockDev  a device node for quotactl(2), when project quotas are on
  l/<short>       symlink to `../<id>/diff`, so that 128+ lower dirs fit in one page of
                  mount options
  .tmp-<id>       a layer being created, .del-<id> one being removed: what a crash leaves,
                  deleted on the next start

A layer without a parent needs no union: `get` returns its diff dir, as Docker does.
One driver instance owns a home at a time: starting one unmounts what it finds mounted
there (the previous owner crashed or was killed).
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
from collections.abc import Mapping
from typing import IO

from .. import archive, fsmagic, mountutil, whiteouts
from ..changes import Change
from ..driver import Driver
from ..errors import DriverError, DriverNotSupported, InvalidLayerId, LayerNotFound
from ..projectquota import ProjectQuota
from . import changes as overlay_changes
from . import copyup, mounting

log = logging.getLogger(__name__)

LINK_DIR = "l"
TMP_PREFIX = ".tmp-"
DEL_PREFIX = ".del-"
LINK_LENGTH = 26
# Fixed, so that the native diff is always right: a redirect or metacopy-only upper
# entry cannot be expressed in a layer tar.
BASE_OPTIONS = "index=off,redirect_dir=off,metacopy=off"
RESERVED = {LINK_DIR, "backingFsBlockDev"}
BACKING_FS = {fsmagic.EXT4_MAGIC, fsmagic.XFS_MAGIC, fsmagic.BTRFS_MAGIC}


def new_link() -> str:
    """A random 26-character name from [A-Z2-7], as Docker's overlay2 makes them."""
    return base64.b32encode(os.urandom(16)).decode("ascii")[:LINK_LENGTH]


class Overlay2Driver(Driver):
    name = "overlay2"

    def __init__(self, home: str, options: Mapping[str, str] | None = None, *, backing_fs: str = "") -> None:
        super().__init__(home, options)
        self.backing_fs = backing_fs
        self.links = os.path.join(home, LINK_DIR)
        os.makedirs(self.links, mode=0o700, exist_ok=True)
        self._recover()
        # `size` as Docker's overlay2 does it: a project quota on the layer directory.
        self.quota = ProjectQuota(home)
        self.supports_quota = self.quota.unsupported is None
        if self.supports_quota:
            for entry in os.listdir(home):
                if os.path.isdir(self._diff_dir(entry)):
                    self.quota.note_used(self._dir(entry))

    # -- startup -------------------------------------------------------------------------

    def _recover(self) -> None:
        """Undo what a crashed run left: merged mounts, half-created or half-removed layers."""
        kept = self.disowned_mounts()  # detached containers still run in these
        for point in set(mountutil.mounts_under(self.home)) - kept:
            log.info("overlay2: unmounting %s, left mounted by an earlier instance", point)
            mountutil.umount_retry(point)
        for entry in os.listdir(self.home):
            if entry.startswith((TMP_PREFIX, DEL_PREFIX)):
                log.info("overlay2: deleting %s, left by an interrupted create or remove", entry)
                shutil.rmtree(os.path.join(self.home, entry))
        for link in os.listdir(self.links):
            path = os.path.join(self.links, link)
            if not os.path.exists(path):  # dangling: its layer never completed
                os.unlink(path)

    # -- paths ---------------------------------------------------------------------------

    def _dir(self, id: str) -> str:
        return os.path.join(self.home, id)

    def _diff_dir(self, id: str) -> str:
        return os.path.join(self.home, id, "diff")

    def _read(self, id: str, name: str) -> str | None:
        try:
            with open(os.path.join(self.home, id, name), encoding="ascii") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _lowers(self, id: str) -> list[str]:
        """The `l/<short>` entries of the layer's ancestors, nearest first."""
        lower = self._read(id, "lower")
        return lower.split(":") if lower else []

    def _lower_dirs(self, id: str) -> list[str]:
        """Absolute diff dirs of the layer's ancestors, nearest first."""
        return [os.path.realpath(os.path.join(self.home, entry)) for entry in self._lowers(id)]

    def _is_parent(self, id: str, parent: str | None) -> bool:
        """Whether `parent` is the layer's real parent (so its diff dir is the whole diff)."""
        lowers = self._lowers(id)
        if parent is None:
            return not lowers
        link = self._read(parent, "link")
        return bool(lowers) and link is not None and lowers[0] == f"{LINK_DIR}/{link}"

    # -- hooks ---------------------------------------------------------------------------

    def _exists(self, id: str) -> bool:
        return os.path.isdir(self._diff_dir(id))

    def _create(self, id: str, parent: str | None, *, size: int | None, read_write: bool) -> None:
        if id in RESERVED:
            raise InvalidLayerId(id)  # the name of one of the driver's own entries in its home
        tmp = os.path.join(self.home, TMP_PREFIX + id)
        link_path = None
        try:
            os.mkdir(tmp, 0o700)
            if size is not None:
                self.quota.limit(tmp, size)  # inherited by diff/ and work/, made next
            os.mkdir(os.path.join(tmp, "diff"), 0o755)
            link = new_link()
            while os.path.lexists(os.path.join(self.links, link)):
                link = new_link()
            _write(os.path.join(tmp, "link"), link)
            if parent is not None:
                os.mkdir(os.path.join(tmp, "work"), 0o700)
                os.mkdir(os.path.join(tmp, "merged"), 0o700)
                parent_link = self._read(parent, "link")
                if parent_link is None:
                    raise DriverError(f"overlay2: parent layer {parent!r} has no link file ({self._dir(parent)})")
                _write(os.path.join(tmp, "lower"), ":".join([f"{LINK_DIR}/{parent_link}", *self._lowers(parent)]))
                # Before the child exists: a parent with children is never mounted writable.
                _write(os.path.join(self._dir(parent), "committed"), "")
            link_path = os.path.join(self.links, link)
            os.symlink(os.path.join("..", id, "diff"), link_path)
            os.rename(tmp, self._dir(id))
        except BaseException:
            if link_path is not None and os.path.lexists(link_path):
                os.unlink(link_path)
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _remove(self, id: str) -> None:
        link = self._read(id, "link")
        doomed = os.path.join(self.home, DEL_PREFIX + id)
        os.rename(self._dir(id), doomed)  # the layer is gone in one step; the rest is cleanup
        if link:
            try:
                os.unlink(os.path.join(self.links, link))
            except FileNotFoundError:
                pass
        shutil.rmtree(doomed)

    def _mount(self, id: str, mount_label: str) -> str:
        """Overlay-mount a layer with a parent; `mount_label` is ignored (no SELinux here)."""
        lowers = self._lowers(id)
        if not lowers:
            return self._diff_dir(id)
        layer = self._dir(id)
        merged = os.path.join(layer, "merged")
        readonly = os.path.exists(os.path.join(layer, "committed"))
        absolute = _options([os.path.join(self.home, e) for e in lowers], f"{layer}/diff", f"{layer}/work", readonly)
        if mounting.fits(absolute):
            mountutil.mount("overlay", merged, "overlay", 0, absolute)
            return merged
        relative = _options(lowers, f"{id}/diff", f"{id}/work", readonly)
        if not mounting.fits(relative):
            raise DriverError(
                f"overlay2: cannot mount {id!r}: its {len(lowers)} lower layers need {len(relative)} bytes of "
                f"mount options, more than one page ({mounting.PAGE_SIZE})"
            )
        mounting.mount_from(self.home, "overlay", os.path.join(id, "merged"), "overlay", 0, relative)
        return merged

    def _unmount(self, id: str) -> None:
        """Only called after a `_mount` of this instance, so a layer with lowers is mounted."""
        if self._lowers(id):
            mountutil.umount_retry(os.path.join(self._dir(id), "merged"))

    # -- native diff ---------------------------------------------------------------------

    def changes(self, id: str, parent: str | None = None) -> list[Change]:
        if not self._native(id, parent):
            return super().changes(id, parent)
        return overlay_changes.changes(self._diff_dir(id), self._lower_dirs(id))

    def diff(self, id: str, parent: str | None = None) -> IO[bytes]:
        if not self._native(id, parent):
            return super().diff(id, parent)
        return archive.export_dir(self._diff_dir(id), whiteouts=whiteouts.OVERLAY)

    def diff_size(self, id: str, parent: str | None = None) -> int:
        if not self._native(id, parent):
            return super().diff_size(id, parent)
        return archive.dir_diff_size(self._diff_dir(id), whiteouts=whiteouts.OVERLAY)

    def apply_diff(self, id: str, parent: str | None, stream: IO[bytes]) -> int:
        if not self._native(id, parent):
            return super().apply_diff(id, parent, stream)
        if not self._lowers(id):
            # With nothing below, a whiteout hides nothing: apply it as a deletion instead
            # of leaving a 0/0 device in a layer that `get` shows without an overlay.
            return archive.apply_layer(self._diff_dir(id), stream, whiteouts=whiteouts.DELETE)
        diff_dir = self._diff_dir(id)
        lowers = self._lower_dirs(id)

        def copy_up(target: str) -> list[str]:
            # A hard link to a file of a lower layer: copy it up first, as the kernel would.
            return [os.path.relpath(path, diff_dir) for path in copyup.copy_up(diff_dir, lowers, {target})]

        return archive.apply_layer(diff_dir, stream, whiteouts=whiteouts.OVERLAY, copy_up=copy_up)

    def _native(self, id: str, parent: str | None) -> bool:
        if not self.exists(id):
            raise LayerNotFound(id)
        return self._is_parent(id, parent)

    # -- facts ---------------------------------------------------------------------------

    def quota_unsupported_reason(self) -> str:
        return self.quota.unsupported or ""

    def status(self) -> list[tuple[str, str]]:
        return [
            ("Backing Filesystem", self.backing_fs),
            ("Supports d_type", "true"),
            ("Native Overlay Diff", "true"),
            ("Size Limits", "project quotas" if self.supports_quota else f"none ({self.quota.unsupported})"),
            ("Mount Options", BASE_OPTIONS),
        ]

    def metadata(self, id: str) -> dict[str, str]:
        if not self.exists(id):
            raise LayerNotFound(id)
        layer = self._dir(id)
        facts = {"UpperDir": self._diff_dir(id)}
        lowers = self._lower_dirs(id)
        if lowers:
            facts.update(
                LowerDir=":".join(lowers), WorkDir=os.path.join(layer, "work"), MergedDir=os.path.join(layer, "merged")
            )
        return facts


def _options(lowers: list[str], diff: str, work: str, readonly: bool) -> str:
    """overlay mount data: read-only layers stack their own diff on top and get no upper."""
    if readonly:
        return f"{BASE_OPTIONS},lowerdir={':'.join([diff, *lowers])}"
    return f"{BASE_OPTIONS},lowerdir={':'.join(lowers)},upperdir={diff},workdir={work}"


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def create(home: str, options: Mapping[str, str]) -> Overlay2Driver:
    """Factory: checks the kernel has overlayfs and the backing filesystem can be its upper."""
    with open("/proc/filesystems", encoding="ascii") as f:
        if not any(line.split()[-1:] == ["overlay"] for line in f):
            raise DriverNotSupported(
                "overlay2", "the kernel has no overlay filesystem (not in /proc/filesystems; try modprobe overlay)"
            )
    probe = home
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    found = fsmagic.magic(probe)
    if found not in BACKING_FS:
        raise DriverNotSupported(
            "overlay2",
            f"{home} is on {fsmagic.name(found)}; overlay2 needs ext4, xfs (ftype=1) or btrfs "
            "as its backing filesystem",
        )
    os.makedirs(home, mode=0o700, exist_ok=True)
    if not mounting.supports_d_type(home):
        raise DriverNotSupported(
            "overlay2",
            f"{home} is on {fsmagic.name(found)} without d_type support "
            "(xfs needs ftype=1: reformat with mkfs.xfs -n ftype=1)",
        )
    return Overlay2Driver(home, options, backing_fs=fsmagic.name(found))

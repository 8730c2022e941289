"""The btrfs graphdriver: every layer is a subvolume, every child a snapshot of its parent.

Copy-on-write happens in the filesystem, so `create` of a child is one snapshot ioctl
however big the parent is, and `get` needs no mount: the subvolume already is the
layer's full filesystem.

Layout under `<root>/btrfs/`:
  subvolumes/<id>        the layer's subvolume
  subvolumes/.tmp-<id>   a layer being created (renamed into place when complete; a crash
                         leaves only these, and the next start deletes them)
  quotas/<id>            the layer's `size` limit in bytes, when it has one

A `size` caps the bytes the layer's subvolume references (its qgroup's max_rfer), data
shared with the parent included, as in Docker: it is a limit on the layer's whole
filesystem, not on what it adds.
"""

from __future__ import annotations

import errno
import importlib.metadata
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import btrfsutil

from .. import fsmagic
from ..driver import Driver
from ..errors import DriverError, DriverNotSupported, InvalidOption, LayerNotFound
from ..options import DriverOptions, option
from ..units import human_size, size_parser
from . import qgroup

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class BtrfsOptions(DriverOptions):
    min_space: int = option("btrfs.min_space", size_parser("btrfs.min_space"), 0)


class BtrfsDriver(Driver):
    name = "btrfs"
    options_type = BtrfsOptions
    options: BtrfsOptions
    supports_quota = True

    def __init__(self, home: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        self.min_space = self.options.min_space
        self.subvolumes = os.path.join(home, "subvolumes")
        self.quotas = os.path.join(home, "quotas")
        os.makedirs(self.subvolumes, mode=0o700, exist_ok=True)
        os.makedirs(self.quotas, mode=0o700, exist_ok=True)
        self._quota_on = qgroup.quota_enabled(self.home)
        self._remove_half_created()

    # -- startup -------------------------------------------------------------------------

    def _remove_half_created(self) -> None:
        """Delete what a create interrupted by a crash left: `.tmp-*` subvolumes, and
        size records of layers that never came to exist."""
        for entry in os.listdir(self.subvolumes):
            if entry.startswith(TMP_PREFIX):
                log.info("btrfs: deleting subvolume %s, left by an interrupted create", entry)
                self._delete_subvolume(os.path.join(self.subvolumes, entry))
        for entry in os.listdir(self.quotas):
            if not self._exists(entry):
                os.unlink(self._quota_file(entry))

    # -- paths ---------------------------------------------------------------------------

    def _path(self, id: str) -> str:
        return os.path.join(self.subvolumes, id)

    def _quota_file(self, id: str) -> str:
        return os.path.join(self.quotas, id)

    # -- hooks ---------------------------------------------------------------------------

    def _exists(self, id: str) -> bool:
        return os.path.isdir(self._path(id))

    def _create(self, id: str, parent: str | None, *, size: int | None, read_write: bool) -> None:
        if size is not None:
            self._check_size(size)
        tmp = os.path.join(self.subvolumes, TMP_PREFIX + id)
        if os.path.lexists(tmp):  # a create of this id that failed and could not clean up
            self._delete_subvolume(tmp)
        if parent is None:
            btrfsutil.create_subvolume(tmp)
        else:
            btrfsutil.create_snapshot(self._path(parent), tmp)
        try:
            if size is not None:
                self._ensure_quota()
                qgroup.limit_referenced(tmp, size)
                with open(self._quota_file(id), "w", encoding="ascii") as f:
                    f.write(str(size))
            elif parent is not None and self._size_limit(parent) is not None:
                # The kernel copies the source's limit to a snapshot; a size is per layer.
                qgroup.limit_referenced(tmp, qgroup.NO_LIMIT)
            os.rename(tmp, self._path(id))
        except BaseException:
            self._delete_subvolume(tmp)
            if size is not None and os.path.exists(self._quota_file(id)):
                os.unlink(self._quota_file(id))
            raise

    def _check_size(self, size: int) -> None:
        if size <= 0:
            raise InvalidOption(f"btrfs: invalid storage size {size}: it must be more than 0")
        if size < self.min_space:
            raise InvalidOption(
                f"btrfs: storage size {human_size(size)} is less than btrfs.min_space {human_size(self.min_space)}"
            )

    def _ensure_quota(self) -> None:
        if not self._quota_on:
            qgroup.enable_quota(self.home)
            self._quota_on = True

    def _remove(self, id: str) -> None:
        self._delete_subvolume(self._path(id))
        try:
            os.unlink(self._quota_file(id))
        except FileNotFoundError:
            pass

    def _delete_subvolume(self, path: str) -> None:
        """Delete a subvolume and any a container made inside it (read-only ones too)."""
        try:
            btrfsutil.delete_subvolume(path, recursive=True)
        except btrfsutil.BtrfsUtilError as exc:
            if exc.errno == errno.ENOENT:
                return
            if exc.errno not in (errno.EROFS, errno.EPERM):
                raise DriverError(f"btrfs: cannot delete subvolume {path}: {exc}") from exc
            # A read-only subvolume with subvolumes inside cannot have them unlinked:
            # make every subvolume below writable, then retry.
            for sub, _ in btrfsutil.SubvolumeIterator(path):
                btrfsutil.set_subvolume_read_only(os.path.join(path, sub), False)
            btrfsutil.set_subvolume_read_only(path, False)
            btrfsutil.delete_subvolume(path, recursive=True)

    def _mount(self, id: str, mount_label: str) -> str:
        return self._path(id)

    def _unmount(self, id: str) -> None:
        """Nothing is mounted: `put` is bookkeeping only."""

    # -- facts ---------------------------------------------------------------------------

    def _size_limit(self, id: str) -> int | None:
        try:
            with open(self._quota_file(id), encoding="ascii") as f:
                return int(f.read())
        except FileNotFoundError:
            return None

    def status(self) -> list[tuple[str, str]]:
        return [
            ("Build Version", f"btrfsutil {importlib.metadata.version('btrfsutil')}"),
            ("Library Version", _library_version()),
            ("Backing Filesystem", fsmagic.fs_name(self.home)),
            ("Quota", "enabled" if qgroup.quota_enabled(self.home) else "disabled"),
            ("Min Space", human_size(self.min_space) if self.min_space else "none"),
        ]

    def metadata(self, id: str) -> dict[str, str]:
        if not self.exists(id):
            raise LayerNotFound(id)
        path = self._path(id)
        info = btrfsutil.subvolume_info(path)
        facts = {
            "Path": path,
            "SubvolumeID": str(info.id),
            "ParentUUID": info.parent_uuid.hex() if any(info.parent_uuid) else "",
        }
        limit = self._size_limit(id)
        if limit is not None:
            facts["Size"] = str(limit)
        return facts


def _library_version() -> str:
    """libbtrfsutil's version, from the shared object the module is linked against."""
    for directory in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib"):
        link = os.path.join(directory, "libbtrfsutil.so.1")
        if os.path.exists(link):
            real = os.path.basename(os.path.realpath(link))
            return "libbtrfsutil " + real.removeprefix("libbtrfsutil.so.")
    return "libbtrfsutil (version unknown)"


def create(home: str, options: Mapping[str, str]) -> BtrfsDriver:
    """Factory: refuses any root that is not on btrfs, naming what it is on."""
    probe = home
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    found = fsmagic.magic(probe)
    if found != fsmagic.BTRFS_MAGIC:
        raise DriverNotSupported(
            "btrfs",
            f"{home} must be on a btrfs filesystem, but {probe} is on {fsmagic.name(found)}",
        )
    return BtrfsDriver(home, options)

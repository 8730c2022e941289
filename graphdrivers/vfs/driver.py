"""vfs: every layer is a plain directory holding a full copy of its parent.

No copy-on-write, no mounts: `get` returns the directory itself. That makes vfs the
driver that works on any filesystem and the baseline the others are measured against;
its one cost is `create`, which copies the whole parent (see copytree).

A layer appears atomically: it is built under a temporary name that is not a valid
layer id (`.creating-<id>`) and renamed into place when complete, and removed by
renaming it away (`.removing-<id>`) before deleting. Leftovers of a crash under either
name are deleted when the driver starts.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from ..driver import Driver
from ..errors import LayerNotFound
from ..fsmagic import fs_name
from ..options import DriverOptions, option
from ..projectquota import ProjectQuota
from ..units import choice
from .copytree import COPY_FULL, COPY_RANGE, copy_tree

log = logging.getLogger(__name__)

_CREATING = ".creating-"
_REMOVING = ".removing-"


@dataclass(frozen=True)
class VfsOptions(DriverOptions):
    copy: str = option("vfs.copy", choice("vfs.copy", (COPY_RANGE, COPY_FULL)), COPY_RANGE)


class VfsDriver(Driver):
    name = "vfs"
    options_type = VfsOptions
    options: VfsOptions

    def __init__(self, home: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        self.copy_method = self.options.copy
        self.dir = os.path.join(home, "dir")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(home, 0o700)
        os.chmod(self.dir, 0o700)  # also clears a setgid bit inherited from above
        self.backing_fs = fs_name(self.dir)
        self._remove_leftovers()
        self.quota = ProjectQuota(home)
        self.supports_quota = self.quota.unsupported is None
        if self.supports_quota:
            for name in os.listdir(self.dir):
                self.quota.note_used(self._path(name))

    def _remove_leftovers(self) -> None:
        """Best effort: what cannot be deleted now (an immutable file, say) is not a layer
        and must not keep the driver from starting; the next start tries again."""
        for name in os.listdir(self.dir):
            if name.startswith((_CREATING, _REMOVING)):
                log.info("vfs: deleting %s, left by an interrupted create or remove", name)
                shutil.rmtree(os.path.join(self.dir, name), ignore_errors=True)

    def _path(self, id: str) -> str:
        return os.path.join(self.dir, id)

    # -- hooks -------------------------------------------------------------------------

    def _exists(self, id: str) -> bool:
        return os.path.isdir(self._path(id))

    def _create(self, id: str, parent: str | None, *, size: int | None, read_write: bool) -> None:
        tmp = os.path.join(self.dir, _CREATING + id)
        if os.path.lexists(tmp):  # what an earlier failed create of this id could not delete
            shutil.rmtree(tmp)
        try:
            os.mkdir(tmp, 0o700)
            if size is not None:
                self.quota.limit(tmp, size)
            if parent is None:
                os.chmod(tmp, 0o755)
            else:
                copy_tree(self._path(parent), tmp, self.copy_method)
            os.rename(tmp, self._path(id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _remove(self, id: str) -> None:
        doomed = os.path.join(self.dir, _REMOVING + id)
        os.rename(self._path(id), doomed)
        shutil.rmtree(doomed)

    def _mount(self, id: str, mount_label: str) -> str:
        return self._path(id)

    def _unmount(self, id: str) -> None:
        """Nothing is mounted: the layer is its directory."""

    # -- facts -------------------------------------------------------------------------

    def status(self) -> list[tuple[str, str]]:
        copy = (
            "copy_file_range (the filesystem may share extents)"
            if self.copy_method == COPY_RANGE
            else "full (read/write byte copies)"
        )
        quota = "project quotas" if self.supports_quota else f"none ({self.quota.unsupported})"
        return [("Backing Filesystem", self.backing_fs), ("Copy", copy), ("Size Limits", quota)]

    def metadata(self, id: str) -> dict[str, str]:
        if not self.exists(id):
            raise LayerNotFound(id)
        return {"Path": self._path(id)}

    def quota_unsupported_reason(self) -> str:
        return self.quota.unsupported or ""


def factory(home: str, options: Mapping[str, str]) -> VfsDriver:
    return VfsDriver(home, options)

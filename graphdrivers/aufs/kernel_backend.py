"""Mounting unions with the kernel's aufs, the way Docker's aufs driver did.

The first mount carries as many branches as fit in one page of mount options (the
kernel copies at most a page); the rest are appended one remount at a time.
"""

from __future__ import annotations

import os

from .. import mountutil
from ..errors import LazyNotSupported

# CONFIG_AUFS_BRANCH_MAX_127, the default of every distribution kernel that shipped aufs
MAX_BRANCHES = 127
XINO = "/dev/shm/aufs.xino"


def available() -> bool:
    try:
        with open("/proc/filesystems", encoding="ascii") as f:
            return any(line.split()[-1] == "aufs" for line in f if line.strip())
    except OSError:
        return False


class KernelBackend:
    """The kernel's aufs (a `UnionBackend`)."""

    name = "kernel"
    max_branches: int | None = MAX_BRANCHES
    serves_lazy = False

    def mount(self, mountpoint: str, branches: list[str], mount_label: str, lazy: dict[int, str] | None = None) -> None:
        if lazy:
            raise LazyNotSupported("aufs", "kernel aufs cannot fetch a lazy layer's files on first read "
                                           "(use aufs.backend=fuse)")
        rw, lower = branches[0], branches[1:]
        page = os.sysconf("SC_PAGESIZE")
        label = f",context={mount_label}" if mount_label else ""
        options = f"br:{rw}=rw"
        first = 0
        for branch in lower:
            piece = f":{branch}=ro+wh"
            if len(options) + len(piece) + len(label) + len(",dio,xino=" + XINO) >= page:
                break
            options += piece
            first += 1
        mountutil.mount("none", mountpoint, "aufs", 0, f"{options},dio,xino={XINO}{label}")
        try:
            for branch in lower[first:]:
                mountutil.mount("none", mountpoint, None, mountutil.MS_REMOUNT, f"append:{branch}=ro+wh")
        except BaseException:
            mountutil.umount(mountpoint, mountutil.MNT_DETACH)
            raise

    def unmount(self, mountpoint: str) -> None:
        mountutil.umount_retry(mountpoint)

    def forget(self, mountpoint: str) -> None:
        """Nothing tracked: the kernel serves the mount."""

    def describe(self, scratch: str) -> str:
        return "kernel (aufs)"

    def close(self) -> None:
        """Nothing to stop: the kernel serves the mounts (the driver unmounts them)."""

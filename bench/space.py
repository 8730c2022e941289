"""Used space of a backing filesystem, measured after its dirty data reached the disk.

Space amplification (bytes the filesystem used for a layer / bytes of file data in it) is
only meaningful when delayed allocation and btrfs' lazy subvolume cleanup have settled,
so `used_bytes` syncs the filesystem first (and waits for deleted btrfs subvolumes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def syncfs(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def settle(path: str, fstype: str) -> None:
    """Let freed space from earlier removals show up before the next measurement."""
    if fstype == "btrfs":
        # Commit first: the cleaner frees deleted subvolumes only after a transaction commit,
        # so `subvolume sync` alone would wait for the next periodic commit (30 s).
        subprocess.run(["btrfs", "filesystem", "sync", path], capture_output=True, check=False)
        subprocess.run(["btrfs", "subvolume", "sync", path], capture_output=True, check=False)
    syncfs(path)


def used_bytes(path: str) -> int:
    # A global sync first: drivers that keep a filesystem inside an image file on the
    # backing fs (devmapper's loop devices) only reach the backing fs when that inner
    # filesystem is written back; syncfs then flushes the backing fs itself.
    os.sync()
    syncfs(path)
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize

"""Which filesystem a path is on, by statfs(2) magic number.

Drivers check their prerequisites with this rather than the mount table: statfs answers
for the exact directory (bind mounts, nested mounts and moved roots included) and costs
one syscall. Docker's graphdrivers do the same (`graphdriver.GetFSMagic`).
"""

from __future__ import annotations

import ctypes
import os

BTRFS_MAGIC = 0x9123683E
EXT4_MAGIC = 0xEF53  # ext2, ext3 and ext4 share it
XFS_MAGIC = 0x58465342
TMPFS_MAGIC = 0x01021994
OVERLAY_MAGIC = 0x794C7630
FUSE_MAGIC = 0x65735546
NFS_MAGIC = 0x6969
ZFS_MAGIC = 0x2FC12FC1
SQUASHFS_MAGIC = 0x73717368
AUFS_MAGIC = 0x61756673
ECRYPTFS_MAGIC = 0xF15F

NAMES = {
    BTRFS_MAGIC: "btrfs",
    EXT4_MAGIC: "ext4",
    XFS_MAGIC: "xfs",
    TMPFS_MAGIC: "tmpfs",
    OVERLAY_MAGIC: "overlayfs",
    FUSE_MAGIC: "fuse",
    NFS_MAGIC: "nfs",
    ZFS_MAGIC: "zfs",
    SQUASHFS_MAGIC: "squashfs",
    AUFS_MAGIC: "aufs",
    ECRYPTFS_MAGIC: "ecryptfs",
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]


def magic(path: str) -> int:
    """The f_type statfs(2) reports for `path`."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: statfs {path!r}")
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


def name(fs_magic: int) -> str:
    """A human name for a magic number ("unknown (0x...)" when not in the table)."""
    return NAMES.get(fs_magic, f"unknown (0x{fs_magic:08x})")


def fs_name(path: str) -> str:
    return name(magic(path))

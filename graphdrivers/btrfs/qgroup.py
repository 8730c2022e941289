"""btrfs quota groups through the kernel's ioctls.

libbtrfsutil (and so the `btrfsutil` module) has no qgroup calls, and spawning
`btrfs qgroup limit` on every sized `create` would cost a fork+exec; Docker's btrfs
driver makes the same three ioctls directly.
"""

from __future__ import annotations

import ctypes
import fcntl
import os

_IOC_WRITE = 1
_IOC_READ = 2
_BTRFS_IOCTL_MAGIC = 0x94

QUOTA_CTL_ENABLE = 1
QGROUP_LIMIT_MAX_RFER = 1 << 0
NO_LIMIT = (1 << 64) - 1  # the kernel's CLEAR_VALUE: drop the limit


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (_BTRFS_IOCTL_MAGIC << 8) | nr


class _QuotaCtlArgs(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint64), ("status", ctypes.c_uint64)]


class _QgroupLimit(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("max_rfer", ctypes.c_uint64),
        ("max_excl", ctypes.c_uint64),
        ("rsv_rfer", ctypes.c_uint64),
        ("rsv_excl", ctypes.c_uint64),
    ]


class _QgroupLimitArgs(ctypes.Structure):
    _fields_ = [("qgroupid", ctypes.c_uint64), ("lim", _QgroupLimit)]


class _FsInfoArgs(ctypes.Structure):
    _fields_ = [
        ("max_id", ctypes.c_uint64),
        ("num_devices", ctypes.c_uint64),
        ("fsid", ctypes.c_uint8 * 16),
        ("reserved", ctypes.c_uint8 * (1024 - 32)),
    ]


IOC_FS_INFO = _ioc(_IOC_READ, 31, ctypes.sizeof(_FsInfoArgs))
IOC_QUOTA_CTL = _ioc(_IOC_READ | _IOC_WRITE, 40, ctypes.sizeof(_QuotaCtlArgs))
IOC_QGROUP_LIMIT = _ioc(_IOC_READ, 43, ctypes.sizeof(_QgroupLimitArgs))
IOC_QUOTA_RESCAN_WAIT = _ioc(0, 46, 0)


def _ioctl(path: str, request: int, arg: ctypes.Structure | int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, request, arg)
    finally:
        os.close(fd)


def fsid(path: str) -> str:
    """The filesystem UUID, as /sys/fs/btrfs/ names it."""
    args = _FsInfoArgs()
    _ioctl(path, IOC_FS_INFO, args)
    raw = bytes(args.fsid).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def quota_enabled(path: str) -> bool:
    """The kernel lists a `qgroups` directory in sysfs exactly while quotas are on."""
    return os.path.isdir(f"/sys/fs/btrfs/{fsid(path)}/qgroups")


def enable_quota(path: str) -> None:
    """Turn quotas on for the filesystem holding `path` and wait for the initial rescan.

    Waiting matters: limits are only enforced against correct accounting.
    """
    _ioctl(path, IOC_QUOTA_CTL, _QuotaCtlArgs(cmd=QUOTA_CTL_ENABLE))
    _ioctl(path, IOC_QUOTA_RESCAN_WAIT)


def limit_referenced(subvolume: str, size: int) -> None:
    """Cap the bytes the subvolume `subvolume` may reference (qgroup 0/<its id>);
    `NO_LIMIT` removes the cap."""
    args = _QgroupLimitArgs(qgroupid=0)  # 0: the subvolume the descriptor is on
    args.lim.flags = QGROUP_LIMIT_MAX_RFER
    args.lim.max_rfer = size
    _ioctl(subvolume, IOC_QGROUP_LIMIT, args)

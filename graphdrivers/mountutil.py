"""mount(2)/umount2(2) through libc, and reading the mount table.

The mount table answers where things are mounted (what to unmount, whether a path is a
mount point); which filesystem a path is on is `fsmagic`'s question (statfs), not its.

Drivers mount on hot paths (overlay2 `get`, devmapper `get`); spawning mount(8) would
cost a fork+exec per call, so the syscalls are made directly.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time

log = logging.getLogger(__name__)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000

MNT_FORCE = 0x1
MNT_DETACH = 0x2

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOATIME = 0x10
_MOUNT_ATTR__ATIME = 0x70
_SYS_OPEN_TREE = 428  # the same number on every architecture (the unified syscall table)
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_AT_EMPTY_PATH = 0x1000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        detail = f"mount {fstype or ''} {source!r} on {target!r}"
        if data:
            detail += f" with options {data[:200]!r}{'...' if len(data) > 200 else ''}"
        raise OSError(err, f"{os.strerror(err)}: {detail}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: umount {target!r}")


def detached_view(path: str | bytes, attrs: int) -> int:
    """A descriptor of a private, unattached bind mount of `path` with mount attributes
    `attrs` (MOUNT_ATTR_*). Files opened beneath it carry those attributes -- read-only,
    no atime updates -- yet it is in no mount table, and it goes away with its last user."""
    fd = _libc.syscall(_SYS_OPEN_TREE, -100, os.fsencode(path), _OPEN_TREE_CLONE | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: open_tree {os.fsdecode(path)!r}")
    attr = (ctypes.c_uint64 * 4)(attrs, _MOUNT_ATTR__ATIME if attrs & MOUNT_ATTR_NOATIME else 0, 0, 0)
    if _libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"{os.strerror(err)}: mount_setattr on a view of {os.fsdecode(path)!r}")
    return fd


def umount_retry(target: str, attempts: int = 50, delay: float = 0.02) -> None:
    """Unmount, retrying while busy (a just-exited process may still hold it), then detach lazily."""
    for _ in range(attempts):
        try:
            umount(target)
            return
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return  # not mounted any more
            if exc.errno != errno.EBUSY:
                raise
        time.sleep(delay)
    log.warning("%s stayed busy after %d unmount attempts; detaching it lazily", target, attempts)
    umount(target, MNT_DETACH)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 0 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, source) of every mount this process sees."""
    table = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            table.append((_unescape(fields[4]), rfields[0], _unescape(rfields[1]) if len(rfields) > 1 else ""))
    return table


def is_mountpoint(path: str) -> bool:
    path = os.path.realpath(path)
    return any(point == path for point, _, _ in mount_table())


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix`, deepest first (the order to unmount them)."""
    prefix = os.path.realpath(prefix)
    points = [p for p, _, _ in mount_table() if p == prefix or p.startswith(prefix.rstrip("/") + "/")]
    return sorted(set(points), key=lambda p: (-p.count("/"), p))

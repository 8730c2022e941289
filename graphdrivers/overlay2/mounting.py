"""Mounting overlayfs with lower-dir lists longer than the mount data page allows.

mount(2) copies at most one page of option data. A deep chain written with absolute
paths overflows it, so (like Docker) the driver then writes every path relative to its
home -- `l/<26-char link>` per lower -- and mounts from inside that directory. The working
directory is process-wide in Python, so the mount runs in a short-lived thread that first
unshares its filesystem context (unshare(CLONE_FS)): its chdir cannot move the cwd of
any other thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import threading

from .. import mountutil

log = logging.getLogger(__name__)

CLONE_FS = 0x00000200
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]


def fits(data: str) -> bool:
    """Whether option data (with its terminating NUL) fits the page mount(2) copies."""
    return len(os.fsencode(data)) < PAGE_SIZE


def mount_from(directory: str, source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2) with relative paths in `target` and `data` resolved from `directory`."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if _libc.unshare(CLONE_FS) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"{os.strerror(err)}: unshare(CLONE_FS) for a relative overlay mount")
            os.chdir(directory)
            mountutil.mount(source, target, fstype, flags, data)
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="overlay2-mount-from", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


PROBE_PREFIX = ".d_type-probe-"


def remove_stale_probes(directory: str) -> None:
    """Probes of processes that died while probing (a kill during startup): their pid is gone."""
    for name in os.listdir(directory):
        if not name.startswith(PROBE_PREFIX):
            continue
        pid = name[len(PROBE_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by process %s", name, pid)
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def supports_d_type(directory: str) -> bool:
    """Whether readdir on `directory`'s filesystem reports file types (overlay needs it).

    xfs formatted with ftype=0 returns DT_UNKNOWN for everything; overlayfs then
    misbehaves on whiteouts, so Docker refuses such a backing filesystem.
    """
    remove_stale_probes(directory)
    probe = os.path.join(directory, f"{PROBE_PREFIX}{os.getpid()}-{threading.get_ident()}")
    os.makedirs(probe)
    try:
        with open(os.path.join(probe, "file"), "w"):
            pass
        return _first_d_type(probe) != 0  # DT_UNKNOWN
    finally:
        os.unlink(os.path.join(probe, "file"))
        os.rmdir(probe)


class _Dirent(ctypes.Structure):
    _fields_ = [
        ("d_ino", ctypes.c_uint64),
        ("d_off", ctypes.c_int64),
        ("d_reclen", ctypes.c_ushort),
        ("d_type", ctypes.c_ubyte),
        ("d_name", ctypes.c_char * 256),
    ]


_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.opendir.restype = ctypes.c_void_p
_libc.readdir.argtypes = [ctypes.c_void_p]
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.closedir.argtypes = [ctypes.c_void_p]


def _first_d_type(directory: str) -> int:
    """d_type of the first entry other than . and .. (readdir(3), which scandir hides)."""
    handle = _libc.opendir(os.fsencode(directory))
    if not handle:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: opendir {directory!r}")
    try:
        while True:
            entry = _libc.readdir(handle)
            if not entry:
                raise OSError(f"readdir {directory!r}: the probe file is missing")
            if entry.contents.d_name not in (b".", b".."):
                return entry.contents.d_type
    finally:
        _libc.closedir(handle)

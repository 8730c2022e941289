"""The few Linux syscalls the execdrivers need that Python 3.11's `os` lacks.

They are called through ctypes from inside forked children, between fork and exec, where
spawning a helper binary (unshare(1), mount(8), ip(8)) would cost an exec per step.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

from graphdrivers import mountutil

from .settings import CAPABILITY_NUMBERS

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PR_SET_NAME = 15
PR_CAPBSET_DROP = 24

_SYS_PIVOT_ROOT = 155  # x86_64
_SYS_CAPSET = 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long

# Docker's default capability set: what a container's root keeps.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: {what}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare(0x{flags:x})")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace `fd` refers to (nstype 0: any kind; a network namespace: only the calling thread)."""
    _check(_libc.setns(fd, nstype), f"setns(0x{nstype:x})")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old)), f"pivot_root({new_root!r})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname({name!r})")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl({option}, {arg})")


def set_process_name(name: str) -> None:
    """The name `ps -o comm` shows: a monitor is told apart from the engine it forked from."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _libc.prctl(PR_SET_NAME, ctypes.addressof(buf), 0, 0, 0)


def _capability_numbers(names: tuple[str, ...] | list[str]) -> set[int]:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    return {CAPABILITY_NUMBERS[name] for name in names if CAPABILITY_NUMBERS[name] <= last}


def held_capabilities() -> tuple[str, ...]:
    """The capabilities this process may pass on (its bounding set): a privileged container's."""
    with open("/proc/self/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return tuple(name for name, cap in CAPABILITY_NUMBERS.items() if mask >> cap & 1)


def drop_bounding(keep: tuple[str, ...] | list[str]) -> None:
    """Drop every capability outside `keep` from the bounding set (the process keeps its own)."""
    wanted = _capability_numbers(keep)
    for cap in range(max(CAPABILITY_NUMBERS.values()) + 1):
        if cap not in wanted:
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL for caps the kernel lacks: fine


def set_capabilities(effective: tuple[str, ...] | list[str], permitted: tuple[str, ...] | list[str]) -> None:
    """capset: the process's effective and permitted sets (inheritable empty)."""
    eff, perm = (sum(1 << cap for cap in _capability_numbers(names)) for names in (effective, permitted))
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    # two 32-bit halves of (effective, permitted, inheritable)
    data = struct.pack("6I", eff & 0xFFFFFFFF, perm & 0xFFFFFFFF, 0, eff >> 32, perm >> 32, 0)
    hbuf, dbuf = ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)
    _check(_libc.syscall(_SYS_CAPSET, hbuf, dbuf), "capset")


def loopback_up() -> None:
    """`ip link set lo up` with one ioctl: a fresh network namespace has lo down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))


mount = mountutil.mount
umount = mountutil.umount

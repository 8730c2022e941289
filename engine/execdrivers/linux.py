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
CAPABILITY_NUMBERS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
    "CAP_SYS_CHROOT": 18,
}


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: {what}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare(0x{flags:x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), f"setns(0x{nstype:x})")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old)), f"pivot_root({new_root!r})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname({name!r})")


def set_process_name(name: str) -> None:
    """The name `ps -o comm` shows: a monitor is told apart from the engine it forked from."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _libc.prctl(PR_SET_NAME, ctypes.addressof(buf), 0, 0, 0)


def limit_capabilities(keep: tuple[str, ...] = DEFAULT_CAPABILITIES) -> None:
    """Drop every capability outside `keep` from the bounding set, then from the process."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    wanted = {CAPABILITY_NUMBERS[name] for name in keep}
    for cap in range(last + 1):
        if cap not in wanted:
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL for caps the kernel lacks: fine
    mask = sum(1 << cap for cap in wanted)
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    # two 32-bit halves of (effective, permitted, inheritable)
    data = struct.pack("6I", mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0, mask >> 32, mask >> 32, 0)
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

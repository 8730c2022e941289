"""Name resolution with the layer as the root (a chroot without chroot).

Every name of a layer tar is resolved by the kernel with openat2(2) and
RESOLVE_IN_ROOT: `..` and absolute symlink targets stop at the layer's root, so a
symlink planted by the archive (`var/run -> /run`, `evil -> ../../etc`) can only ever
lead to a place inside the layer. We open the *parent* directory that way and operate
on the final component with the `*at` calls and no-follow flags, so the last component
is never followed either. Parent directory fds are cached, because a layer writes many
entries into the same few directories.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..errors import UnsafeArchive

PATH_MAX = 4096

_SYS_OPENAT2 = 437  # one number on every architecture: syscalls added since 5.1 share a table
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2_in_root(root_fd: int, path: str | bytes, flags: int) -> int:
    """openat2(root_fd, path, flags, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) -> fd, or OSError."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    raw = os.fsencode(path)
    while True:
        fd = _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(root_fd),
            ctypes.c_char_p(raw),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EINTR, errno.EAGAIN):  # EAGAIN: a concurrent rename raced the lookup
            raise OSError(err, os.strerror(err), path)


def open_in_root(root: str, name: str, flags: int = os.O_RDONLY) -> int:
    """Open the archive name `name` inside the layer at `root` -> fd.

    For readers of a layer whose names come from an untrusted tar (tar-split replay): `..`
    and symlinks resolve with `root` as `/`, and the last component is never followed.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return openat2_in_root(root_fd, clean_name(name) or ".", flags | os.O_NOFOLLOW)
    finally:
        os.close(root_fd)


def clean_name(name: str, what: str = "name") -> str:
    """The archive name as a clean path relative to the layer root ("" is the root itself).

    `..` is applied lexically, as Docker does; one that would climb above the root is an
    attack, not something to clamp silently.
    """
    short = name[2:] if name.startswith("./") else name
    if (  # the common case, already clean: no empty, "." or ".." component, nothing odd
        short
        and len(short) < PATH_MAX // 4
        and short[0] != "/"
        and short[-1] != "/"
        and "\0" not in short
        and "//" not in short
        and "/./" not in short
        and "/../" not in short
        and not short.startswith(("./", "../"))
        and not short.endswith(("/.", "/.."))
        and short not in (".", "..")
    ):
        return short
    if "\0" in name:
        raise UnsafeArchive(f"{what} {name!r} contains a NUL byte")
    if len(name) * 4 >= PATH_MAX and len(os.fsencode(name)) >= PATH_MAX:  # a UTF-8 char is <= 4 bytes
        raise UnsafeArchive(f"{what} of {len(os.fsencode(name))} bytes is longer than PATH_MAX ({PATH_MAX})")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchive(f"{what} {name!r} climbs out of the layer with '..'")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def split(path: str) -> tuple[str, str]:
    """("a/b", "c") for "a/b/c"; ("", "c") for "c"."""
    parent, _, base = path.rpartition("/")
    return parent, base


class DirCache:
    """Open O_PATH fds of directories inside the layer, by clean relative path.

    Any replacement or removal of a directory or symlink clears the whole cache: a cached
    fd may have been resolved *through* that entry (`var/run` via the symlink to `run`),
    and such replacements are rare in real layers, so exactness beats cleverness here.
    """

    MAX = 512

    def __init__(self, root: str) -> None:
        self.root = root
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}
        self._retired: list[int] = []

    def get(self, path: str) -> int:
        """An fd of directory `path` (resolved in the root); OSError when it is not one."""
        if not path:
            return self.root_fd
        fd = self._fds.get(path)
        if fd is None:
            fd = openat2_in_root(self.root_fd, path, os.O_PATH | os.O_DIRECTORY)
            self.put(path, fd)
        return fd

    def put(self, path: str, fd: int) -> None:
        """Adopt `fd` as the cached fd of `path` (the cache closes it)."""
        if len(self._fds) >= self.MAX:
            self.clear()
        old = self._fds.pop(path, None)
        if old is not None:
            self._retired.append(old)
        self._fds[path] = fd

    def clear(self) -> None:
        """Forget every cached fd. They are closed only by `release()`: a caller may still
        hold one, and closing it would let the next open() reuse its number for another
        directory."""
        self._retired.extend(self._fds.values())
        self._fds = {}

    def release(self) -> None:
        """Close the fds forgotten so far; call it when no caller holds a cached fd."""
        retired, self._retired = self._retired, []
        for fd in retired:
            os.close(fd)

    def close(self) -> None:
        self.clear()
        self.release()
        os.close(self.root_fd)

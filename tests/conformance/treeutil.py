"""What a mounted layer shows, as plain data the conformance tests can compare exactly.

The suite tests drivers only through the contract plus ordinary file access in the
directory `get` returns, so these helpers are deliberately driver-agnostic: they read a
tree the way a container would, and write one the way a container would.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from graphdrivers import Driver


@dataclass(frozen=True)
class Entry:
    """One path of a tree: its type, permission bits, owner and payload.

    `data` is the file's bytes, a symlink's target, a device's rdev, or None for
    directories and fifos. `xattrs` are the user.* extended attributes, sorted (other
    namespaces may hold a filesystem's or a security module's own attributes).
    """

    kind: str
    mode: int
    uid: int
    gid: int
    data: bytes | str | int | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "chardev"),
        (stat.S_ISBLK, "blockdev"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    raise AssertionError(f"unknown file type {mode:o}")


def entry(path: str) -> Entry:
    st = os.lstat(path)
    kind = _kind(st.st_mode)
    data: bytes | str | int | None = None
    if kind == "file":
        with open(path, "rb") as f:
            data = f.read()
    elif kind == "symlink":
        data = os.readlink(path)
    elif kind in ("chardev", "blockdev"):
        data = st.st_rdev
    return Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data, user_xattrs(path, kind))


def user_xattrs(path: str, kind: str) -> tuple[tuple[str, bytes], ...]:
    if kind == "symlink":  # Linux allows no user.* attributes on symlinks
        return ()
    names = sorted(n for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user."))
    return tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)


def tree(root: str) -> dict[str, Entry]:
    """Every path below `root` (as "/a/b", the root itself as "/") mapped to its Entry."""
    out = {"/": entry(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root) if dirpath != root else ""
        for name in dirnames + filenames:
            out[f"{rel}/{name}"] = entry(os.path.join(dirpath, name))
    return out


def files_with_content(root: str) -> dict[str, bytes]:
    return {p: e.data for p, e in tree(root).items() if e.kind == "file"}  # type: ignore[misc]


@contextlib.contextmanager
def mounted(driver: Driver, layer_id: str) -> Iterator[str]:
    """`get` a layer for the block and `put` it after, as every caller of the contract must."""
    path = driver.get(layer_id)
    try:
        yield path
    finally:
        driver.put(layer_id)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def write(path: str, data: bytes, mode: int | None = None) -> None:
    """Create or truncate a file with `data`, making parent directories as needed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def listing(root: str) -> list[str]:
    """Every path under `root`, sorted: used to prove that a refused call changed nothing."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found.extend(os.path.join(dirpath, n) for n in dirnames + filenames)
    return sorted(found)

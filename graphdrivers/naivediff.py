"""Generic diff over two directory trees (Docker's NaiveDiffDriver).

A driver without a native notion of "what this layer changed" mounts the layer and its
parent and lets this module compare them: `changes` walks both trees with Docker's
ChangesDirs rules, `export_stream` turns the changes into a layer tar and `apply`
extracts one (both through `graphdrivers.archive`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from . import archive, whiteouts
from .archive.export import regular_bytes
from .archive.journal import read_xattrs

if TYPE_CHECKING:
    from .driver import Change

_CHUNK = 1 << 16


def changes(layer_dir: str, parent_dir: str | None) -> list[Change]:
    """What `layer_dir` changed over `parent_dir` (None: an empty parent), sorted by path.

    "A" for an added path and everything below an added directory, "D" for the topmost
    deleted path only, "C" for a changed one, plus a "C" for each directory (not "/", not
    an added or already changed one) that has changes below it, so its attributes travel.
    """
    from .driver import Change  # the driver module imports this one

    found: list[tuple[str, str]] = []
    _compare(layer_dir, parent_dir, "", found)
    found.sort()
    return [Change(path, kind) for path, kind in found]


def _scan(path: str | None) -> dict[str, os.DirEntry]:
    if path is None:
        return {}
    with os.scandir(path) as it:
        return {e.name: e for e in it}


def _compare(new_dir: str, old_dir: str | None, rel: str, out: list[tuple[str, str]]) -> bool:
    """Append the changes below `rel`; True when there were any."""
    old_entries = _scan(old_dir)
    start = len(out)
    for name, new in _scan(new_dir).items():
        path = f"{rel}/{name}"
        new_st = new.stat(follow_symlinks=False)
        old = old_entries.pop(name, None)
        if old is None:
            out.append((path, "A"))
            if stat.S_ISDIR(new_st.st_mode):
                _add_all(new.path, path, out)
            continue
        old_st = old.stat(follow_symlinks=False)
        new_is_dir = stat.S_ISDIR(new_st.st_mode)
        if _differs(new.path, new_st, old.path, old_st):
            out.append((path, "C"))
            if new_is_dir:  # compare below it; an old non-directory has no children
                _compare(new.path, old.path if stat.S_ISDIR(old_st.st_mode) else None, path, out)
        elif new_is_dir and _compare(new.path, old.path, path, out):
            out.append((path, "C"))
    for name in old_entries:
        out.append((f"{rel}/{name}", "D"))
    return len(out) > start


def _add_all(full: str, rel: str, out: list[tuple[str, str]]) -> None:
    with os.scandir(full) as it:
        for e in it:
            path = f"{rel}/{e.name}"
            out.append((path, "A"))
            if e.is_dir(follow_symlinks=False):
                _add_all(e.path, path, out)


def _same_time(a_ns: int, b_ns: int) -> bool:
    """Docker's sameFsTime: equal, or the same second when one side lost its nanoseconds
    (a tar without sub-second times)."""
    if a_ns == b_ns:
        return True
    return a_ns // 1_000_000_000 == b_ns // 1_000_000_000 and (a_ns % 1_000_000_000 == 0 or b_ns % 1_000_000_000 == 0)


def _differs(new_path: str, new: os.stat_result, old_path: str, old: os.stat_result) -> bool:
    if (
        new.st_mode != old.st_mode
        or new.st_uid != old.st_uid
        or new.st_gid != old.st_gid
        or new.st_rdev != old.st_rdev
    ):
        return True
    if not stat.S_ISDIR(new.st_mode):  # a directory's mtime and size say nothing useful
        if new.st_size != old.st_size or not _same_time(new.st_mtime_ns, old.st_mtime_ns):
            return True
    if stat.S_ISLNK(new.st_mode) and os.readlink(new_path) != os.readlink(old_path):
        return True
    if read_xattrs(new_path, follow_symlinks=False) != read_xattrs(old_path, follow_symlinks=False):
        return True
    if stat.S_ISREG(new.st_mode) and (new.st_ino != old.st_ino or new.st_ctime_ns != old.st_ctime_ns):
        return not _same_content(new_path, old_path)  # same size and mtime, but not provably the same file
    return False


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            ca = fa.read(_CHUNK)
            if ca != fb.read(_CHUNK):
                return False
            if not ca:
                return True


def changes_size(layer_dir: str, changes: list[Change]) -> int:
    """Bytes of regular-file data of the added and changed paths (hard links once), which
    is what `apply` of the exported diff returns."""
    return regular_bytes(os.lstat(os.path.join(layer_dir, c.path.lstrip("/"))) for c in changes if c.kind != "D")


def export_stream(layer_dir: str, changes: list[Change], on_close: Callable[[], None]) -> IO[bytes]:
    """The changes as a layer tar stream; `on_close` runs once the stream is closed."""
    return archive.export_paths(layer_dir, changes, on_close=on_close)


def apply(layer_dir: str, stream: IO[bytes]) -> int:
    """Extract a layer tar into a full-filesystem layer (whiteouts delete)."""
    return archive.apply_layer(layer_dir, stream, whiteouts=whiteouts.DELETE)

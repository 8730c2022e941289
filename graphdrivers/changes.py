"""What a layer changed: `Change` and the one walker of Docker's ChangesDirs rules.

moby's pkg/archive/changes.go walks the new tree and compares each path with the old
side: "A" for a path the old side does not show (and everything below an added
directory), "D" for the topmost path the old side shows and the new one no longer does,
"C" for a path whose type, mode, owner, device, size, mtime, symlink target, xattrs or
content differ, and a "C" for every directory (not "/") that holds a change, so that
its attributes travel with the layer; the list is sorted by path.

Every driver answers `changes` with this walker, so they all report the same changes for
the same work; they differ only in how the two sides are read, which the hooks say:

- a `NewReader` lists one directory of the new side: its entries, the names it stores
  whiteouts for, and whether it is opaque (hides everything the old side has there);
  a full-filesystem tree (the generic diff) is always opaque: what it lacks is deleted;
- an `OldSide` looks a name up in the old side's view of one directory, descends into a
  subdirectory, and lists the names it shows (only asked for when deletions are possible).

The comparison rule (`differs`) exists once, here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from .archive.journal import read_xattrs
from .whiteouts import OVERLAY_XATTR_PREFIXES

CHANGE_ADD = "A"
CHANGE_MODIFY = "C"
CHANGE_DELETE = "D"

_SECOND = 1_000_000_000
_CHUNK = 1 << 16


@dataclass(frozen=True, order=True)
class Change:
    """One entry of `changes`: an absolute path inside the layer and "A", "C" or "D"."""

    path: str
    kind: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


class NewDir(NamedTuple):
    """One directory of the new side, as its reader sees it."""

    entries: list[os.DirEntry]  # the layer's content (whiteout marks and bookkeeping left out)
    whiteouts: Iterable[str]  # names the directory stores a whiteout for
    opaque: bool  # the old side's entries here are all hidden


NewReader = Callable[[str | bytes], NewDir]


class OldSide(Protocol):
    """The old side's view of one directory."""

    def lookup(self, name: str) -> tuple[str | bytes, os.stat_result] | None:
        """The path and lstat of what the old side shows at `name`, None when nothing."""

    def child(self, name: str) -> OldSide:
        """The view of subdirectory `name` (which `lookup` showed as a directory)."""

    def names(self) -> Iterable[str]:
        """Every name the old side shows here."""


class _Nothing:
    """An old side with nothing in it (below an added or retyped directory)."""

    def lookup(self, name: str) -> None:
        return None

    def child(self, name: str) -> OldSide:
        return self

    def names(self) -> Iterable[str]:
        return ()


NOTHING: OldSide = _Nothing()


def walk(new_root: str | bytes, old: OldSide, read_dir: NewReader) -> list[Change]:
    """The changes of the tree at `new_root` over `old`, sorted by path."""
    found: list[tuple[str, str]] = []
    _compare(new_root, old, "", False, read_dir, found)
    found.sort()
    return [Change(path, kind) for path, kind in found]


def _compare(
    new_dir: str | bytes, old: OldSide, rel: str, hidden: bool, read_dir: NewReader, out: list[tuple[str, str]]
) -> bool:
    """Append the changes below `rel`; True when there were any. `hidden`: an opaque
    directory above already hides the old side here."""
    listing = read_dir(new_dir)
    opaque = hidden or listing.opaque
    start = len(out)
    present = set()
    for entry in listing.entries:
        name = os.fsdecode(entry.name)
        present.add(name)
        path = f"{rel}/{name}"
        below = old.lookup(name)
        if below is None:
            out.append((path, CHANGE_ADD))
            if entry.is_dir(follow_symlinks=False):
                _add_all(entry.path, path, read_dir, out)
            continue
        new_st = entry.stat(follow_symlinks=False)
        old_path, old_st = below
        changed = differs(entry.path, new_st, old_path, old_st)
        if changed:
            out.append((path, CHANGE_MODIFY))
        if stat.S_ISDIR(new_st.st_mode):
            if stat.S_ISDIR(old_st.st_mode):
                sub, sub_hidden = old.child(name), opaque
            else:  # an old non-directory has no children
                sub, sub_hidden = NOTHING, True
            if _compare(entry.path, sub, path, sub_hidden, read_dir, out) and not changed:
                out.append((path, CHANGE_MODIFY))
    whiteouts = set(listing.whiteouts)
    if opaque or whiteouts:
        out.extend(
            (f"{rel}/{name}", CHANGE_DELETE)
            for name in old.names()
            if name not in present and (opaque or name in whiteouts)
        )
    return len(out) > start


def _add_all(directory: str | bytes, rel: str, read_dir: NewReader, out: list[tuple[str, str]]) -> None:
    for entry in read_dir(directory).entries:
        path = f"{rel}/{os.fsdecode(entry.name)}"
        out.append((path, CHANGE_ADD))
        if entry.is_dir(follow_symlinks=False):
            _add_all(entry.path, path, read_dir, out)


def same_time(a_ns: int, b_ns: int) -> bool:
    """Docker's sameFsTime: equal, or the same second when one side lost its nanoseconds
    (a tar without sub-second times)."""
    if a_ns == b_ns:
        return True
    return a_ns // _SECOND == b_ns // _SECOND and (a_ns % _SECOND == 0 or b_ns % _SECOND == 0)


def content_xattrs(path: str | bytes) -> dict[str, bytes]:
    """The path's xattrs that are layer content: overlayfs' own (origin, impure, opaque...)
    are bookkeeping of an upper directory, which archives never carry."""
    xattrs = read_xattrs(path, follow_symlinks=False)
    return {k: v for k, v in xattrs.items() if not k.startswith(OVERLAY_XATTR_PREFIXES)}


def differs(new_path: str | bytes, new: os.stat_result, old_path: str | bytes, old: os.stat_result) -> bool:
    """moby's rule: type and mode, owner, device; for non-directories size and mtime
    (sameFsTime); the symlink target; xattrs; and for a regular file that is not provably
    the same inode unchanged, its content (a copy-up or a snapshot makes a new inode with
    the same data, which is no change)."""
    if (new.st_mode, new.st_uid, new.st_gid, new.st_rdev) != (old.st_mode, old.st_uid, old.st_gid, old.st_rdev):
        return True
    if not stat.S_ISDIR(new.st_mode):  # a directory's mtime and size say nothing useful
        if new.st_size != old.st_size or not same_time(new.st_mtime_ns, old.st_mtime_ns):
            return True
    if stat.S_ISLNK(new.st_mode) and os.readlink(new_path) != os.readlink(old_path):
        return True
    if content_xattrs(new_path) != content_xattrs(old_path):
        return True
    if stat.S_ISREG(new.st_mode) and (new.st_ino != old.st_ino or new.st_ctime_ns != old.st_ctime_ns):
        return not _same_content(new_path, old_path)
    return False


def _same_content(a: str | bytes, b: str | bytes) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            ca = fa.read(_CHUNK)
            if ca != fb.read(_CHUNK):
                return False
            if not ca:
                return True

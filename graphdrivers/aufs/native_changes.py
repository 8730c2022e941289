"""`changes` of an aufs layer from its branch alone, without mounting anything.

The answer must be the one the generic diff gives by comparing the mounted layer with its
mounted parent (so every driver reports the same changes for the same work), but only
the paths the branch holds need looking at: a name the branch does not mention is
unchanged. Each name in the branch is compared with what the parent's union shows there
(read straight from the ancestor branches with the union's own merge rules), with the
generic diff's rules for what counts as a change.
"""

from __future__ import annotations

import os
import stat

from .. import naivediff
from . import whiteout
from .unionfs.tree import build_listing


def branch_changes(branch: str, lower: list[str]) -> list[tuple[str, str]]:
    """(path, kind) of what `branch` changes over the union of `lower` (nearest first), sorted."""
    roots = [os.fsencode(b) for b in lower]
    top = os.fsencode(branch)
    out: list[tuple[str, str]] = []
    _compare(top, roots, b"", list(range(len(roots))), False, out)
    out.sort()
    return out


def _compare(
    top: bytes,
    roots: list[bytes],
    rel: bytes,
    old_dirs: list[int] | None,
    hides_lower: bool,
    out: list[tuple[str, str]],
) -> bool:
    """Changes below directory `rel` of the branch; `old_dirs` are the lower branches
    whose directories make up the parent's view of it (None: the parent has none), and
    `hides_lower` says an opaque directory above already hides everything lower."""
    old = build_listing(roots, rel, old_dirs) if old_dirs else {}
    start = len(out)
    opaque, whited_out, entries = whiteout.read_dir(top + rel)
    whiteouts = set(whited_out)
    names = [de.name for de in entries]
    for name in names:
        path = rel + b"/" + name
        new_full = top + path
        new_st = os.lstat(new_full)
        new_is_dir = stat.S_ISDIR(new_st.st_mode)
        entry = old.get(name)
        if entry is None:
            out.append((os.fsdecode(path), "A"))
            if new_is_dir:
                _add_all(new_full, path, out)
            continue
        old_full = roots[entry.branch] + path
        old_st = os.lstat(old_full)
        if naivediff._differs(os.fsdecode(new_full), new_st, os.fsdecode(old_full), old_st):
            out.append((os.fsdecode(path), "C"))
            if new_is_dir:
                _compare(top, roots, path, entry.dirs, hides_lower or opaque, out)
        elif new_is_dir and _compare(top, roots, path, entry.dirs, hides_lower or opaque, out):
            out.append((os.fsdecode(path), "C"))
    present = set(names)
    for name in old:
        if name not in present and (hides_lower or opaque or name in whiteouts):
            out.append((os.fsdecode(rel + b"/" + name), "D"))
    return len(out) > start


def _add_all(full: bytes, rel: bytes, out: list[tuple[str, str]]) -> None:
    with os.scandir(full) as it:
        for de in it:
            if de.name[:4] == whiteout.PREFIX_B:
                continue
            path = rel + b"/" + de.name
            out.append((os.fsdecode(path), "A"))
            if de.is_dir(follow_symlinks=False):
                _add_all(de.path, path, out)

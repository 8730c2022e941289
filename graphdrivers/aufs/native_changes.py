"""`changes` of an aufs layer from its branch alone, without mounting anything.

The answer must be the one the generic diff gives by comparing the mounted layer with its
mounted parent (so every driver reports the same changes for the same work), but only
the paths the branch holds need looking at: a name the branch does not mention is
unchanged. The walker and its comparison rule are graphdrivers/changes.py; this adapter
reads the branch with aufs' whiteout rules and shows the parent's union straight from the
ancestor branches, merged as the union filesystem merges them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..changes import NOTHING, Change, NewDir, OldSide, walk
from . import whiteout
from .unionfs.tree import Entry, build_listing


class _Union:
    """One directory of the parent's union: the lower branches that make it up."""

    def __init__(self, roots: list[bytes], rel: bytes, dirs: list[int] | None) -> None:
        self.roots = roots
        self.rel = rel
        self.listing: dict[bytes, Entry] = build_listing(roots, rel, dirs) if dirs else {}

    def lookup(self, name: str) -> tuple[bytes, os.stat_result] | None:
        entry = self.listing.get(os.fsencode(name))
        if entry is None:
            return None
        path = self.roots[entry.branch] + self.rel + b"/" + os.fsencode(name)
        return path, os.lstat(path)

    def child(self, name: str) -> OldSide:
        key = os.fsencode(name)
        dirs = self.listing[key].dirs
        return _Union(self.roots, self.rel + b"/" + key, dirs) if dirs else NOTHING

    def names(self) -> Iterable[str]:
        return (os.fsdecode(name) for name in self.listing)


def _read_branch(path: str | bytes) -> NewDir:
    opaque, whited_out, entries = whiteout.read_dir(os.fsencode(path))
    return NewDir(entries, (os.fsdecode(name) for name in whited_out), opaque)


def branch_changes(branch: str, lower: list[str]) -> list[Change]:
    """What `branch` changes over the union of `lower` (nearest first), sorted by path."""
    roots = [os.fsencode(b) for b in lower]
    return walk(os.fsencode(branch), _Union(roots, b"", list(range(len(roots)))), _read_branch)

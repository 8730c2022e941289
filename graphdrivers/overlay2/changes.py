"""A layer's changes read straight from its overlay upper directory (`diff/`).

The result is exactly what the generic diff of the two mounted trees gives (the walker
and its rules are graphdrivers/changes.py), but only the upper directory is walked; the
lower layers are looked up name by name. Docker's `archive.OverlayChanges` walks the
same way but reports every copied-up file as changed and an opaque directory as deleted;
this adapter lets the walker compare what it finds.

Overlay's marks (a 0/0 character device whiteout, the opaque xattr) are read through
`graphdrivers.whiteouts.OVERLAY`.
"""

from __future__ import annotations

import os
import stat

from ..changes import Change, NewDir, walk
from ..whiteouts import OVERLAY


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


class LowerView:
    """One directory as the lower stack shows it: that directory's copies in the layers
    that contribute to it, nearest first (cut below an opaque copy or a non-directory)."""

    def __init__(self, dirs: list[str]) -> None:
        self.dirs = dirs

    def lookup(self, name: str) -> tuple[str, os.stat_result] | None:
        """The path and lstat of what the stack shows at `name`, None when nothing."""
        for directory in self.dirs:
            path = os.path.join(directory, name)
            st = _lstat(path)
            if st is not None:
                return None if OVERLAY.hides(name, st) is not None else (path, st)
        return None

    def child(self, name: str) -> LowerView:
        """The view of subdirectory `name` (which `lookup` showed as a directory)."""
        dirs = []
        for directory in self.dirs:
            path = os.path.join(directory, name)
            st = _lstat(path)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a whiteout or a file here covers everything below
            dirs.append(path)
            if OVERLAY.is_opaque(path):
                break
        return LowerView(dirs)

    def names(self) -> set[str]:
        shown: set[str] = set()
        hidden: set[str] = set()
        for directory in self.dirs:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name in hidden or entry.name in shown:
                        continue
                    if OVERLAY.hides(entry.name, entry.stat(follow_symlinks=False)) is not None:
                        hidden.add(entry.name)
                    else:
                        shown.add(entry.name)
        return shown


def _read_upper(path: str | bytes) -> NewDir:
    """An upper directory: its entries, its 0/0 whiteouts apart, and its opaque xattr."""
    entries, whiteouts = [], []
    with os.scandir(path) as it:
        for entry in it:
            if OVERLAY.hides(entry.name, entry.stat(follow_symlinks=False)) is not None:
                whiteouts.append(entry.name)
            else:
                entries.append(entry)
    return NewDir(entries, whiteouts, OVERLAY.is_opaque(os.fsdecode(path)))


def changes(upper: str, lowers: list[str]) -> list[Change]:
    """Changes of the layer whose upper dir is `upper` over the stack `lowers` (nearest
    first), sorted by path."""
    return walk(upper, LowerView(lowers), _read_upper)

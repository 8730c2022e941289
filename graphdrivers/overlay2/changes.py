"""A layer's changes read straight from its overlay upper directory (`diff/`).

Docker's `archive.OverlayChanges`, with two fixes: a path hidden by a whiteout in a lower
layer does not count as existing, and an opaque directory reports the lower entries it
hides as deleted (as the naive diff of the two mounted trees would) instead of reporting
the directory itself deleted.

Overlay marks, as the kernel writes them (and in the `user.` namespace for unprivileged
mounts): a whiteout is a character device 0/0; an opaque directory has
`trusted.overlay.opaque` = "y".
"""

from __future__ import annotations

import errno
import os
import stat

from ..driver import CHANGE_ADD, CHANGE_DELETE, CHANGE_MODIFY, Change

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                raise
    return False


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def lower_lookup(lowers: list[str], rel: str) -> os.stat_result | None:
    """What the lower stack (nearest first) shows at `rel`, or None when nothing is there."""
    for layer in lowers:
        st = _lstat(os.path.join(layer, rel))
        if st is not None:
            return None if is_whiteout(st) else st
    return None


def lower_names(lowers: list[str], rel: str) -> set[str]:
    """Names the lower stack shows in directory `rel` (merged as overlay merges them)."""
    names: set[str] = set()
    hidden: set[str] = set()
    for layer in lowers:
        path = os.path.join(layer, rel)
        st = _lstat(path)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break  # a non-directory here covers everything below it
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name in hidden or entry.name in names:
                    continue
                if is_whiteout(entry.stat(follow_symlinks=False)):
                    hidden.add(entry.name)
                else:
                    names.add(entry.name)
        if is_opaque(path):
            break
    return names


def _same_dir(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mode == b.st_mode and a.st_mtime_ns == b.st_mtime_ns


def changes(upper: str, lowers: list[str]) -> list[Change]:
    """Changes of the layer whose upper dir is `upper` over the stack `lowers`, sorted."""
    found: dict[str, str] = {}

    def record(path: str, kind: str) -> None:
        found[path] = kind
        if kind in (CHANGE_ADD, CHANGE_DELETE):
            parent = os.path.dirname(path)
            if parent != "/" and parent not in found:
                found[parent] = CHANGE_MODIFY  # its listing changed

    def walk(rel: str) -> None:
        with os.scandir(os.path.join(upper, rel)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child = os.path.join(rel, entry.name)
            path = "/" + child
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                record(path, CHANGE_DELETE)
                continue
            below = lower_lookup(lowers, child)
            is_dir = stat.S_ISDIR(st.st_mode)
            opaque = is_dir and is_opaque(entry.path)
            if below is None:
                record(path, CHANGE_ADD)
            elif not (is_dir and stat.S_ISDIR(below.st_mode) and _same_dir(st, below) and not opaque):
                record(path, CHANGE_MODIFY)
            if is_dir:
                if opaque and below is not None:
                    present = {e.name for e in entries_of(entry.path)}
                    for name in sorted(lower_names(lowers, child) - present):
                        record(os.path.join(path, name), CHANGE_DELETE)
                walk(child)

    walk("")
    return sorted(Change(path, kind) for path, kind in found.items())


def entries_of(directory: str) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return list(it)

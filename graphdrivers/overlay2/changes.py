"""A layer's changes read straight from its overlay upper directory (`diff/`).

The result is exactly what the naive diff of the two mounted trees gives (the rules in
graphdrivers/naivediff.py: "A" for an added path and all below it, "D" for the topmost
deleted path, "C" for a changed path and for each directory with changes below it), but
only the upper directory is walked; the lower layers are looked up name by name.
Docker's `archive.OverlayChanges` walks the same way but reports every copied-up file
as changed and an opaque directory as deleted; this module compares what it finds.

Overlay marks, as the kernel writes them (and in the `user.` namespace for unprivileged
mounts): a whiteout is a character device 0/0; an opaque directory has
`trusted.overlay.opaque` = "y". Overlay's own xattrs (origin, impure, opaque) are
bookkeeping, not layer content, and are ignored when comparing.
"""

from __future__ import annotations

import errno
import filecmp
import os
import stat

from ..driver import CHANGE_ADD, CHANGE_DELETE, CHANGE_MODIFY, Change

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


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
                return None if is_whiteout(st) else (path, st)
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
            if is_opaque(path):
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
                    if is_whiteout(entry.stat(follow_symlinks=False)):
                        hidden.add(entry.name)
                    else:
                        shown.add(entry.name)
        return shown


def _xattrs(path: str) -> dict[str, bytes]:
    """The path's xattrs without overlay's own."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names if not n.startswith(OVERLAY_XATTR_PREFIXES)}


def _same_time(a_ns: int, b_ns: int) -> bool:
    """Equal, or the same second when one side lost its nanoseconds (a tar's whole seconds)."""
    if a_ns == b_ns:
        return True
    second = 1_000_000_000
    return a_ns // second == b_ns // second and (a_ns % second == 0 or b_ns % second == 0)


def _differs(upper: str, st: os.stat_result, lower: str, lst: os.stat_result) -> bool:
    """naivediff's rule: type, mode, owner, device, xattrs; for non-directories size and
    mtime too, then content (a copy-up makes a new inode with the same data)."""
    if (st.st_mode, st.st_uid, st.st_gid, st.st_rdev) != (lst.st_mode, lst.st_uid, lst.st_gid, lst.st_rdev):
        return True
    if not stat.S_ISDIR(st.st_mode):
        if st.st_size != lst.st_size or not _same_time(st.st_mtime_ns, lst.st_mtime_ns):
            return True
        if stat.S_ISLNK(st.st_mode) and os.readlink(upper) != os.readlink(lower):
            return True
    if _xattrs(upper) != _xattrs(lower):
        return True
    return stat.S_ISREG(st.st_mode) and not filecmp.cmp(upper, lower, shallow=False)


def _add_all(directory: str, rel: str, out: list[tuple[str, str]]) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                continue  # hides nothing: there is nothing below an added directory
            out.append((f"{rel}/{entry.name}", CHANGE_ADD))
            if stat.S_ISDIR(st.st_mode):
                _add_all(entry.path, f"{rel}/{entry.name}", out)


def _compare(upper: str, lower: LowerView, rel: str, opaque: bool, out: list[tuple[str, str]]) -> bool:
    """Append the changes below `rel`; True when there were any. `opaque`: the merged
    directory shows only the upper's entries (the lower ones not there are deleted)."""
    start = len(out)
    present = set()
    with os.scandir(upper) as it:
        entries = list(it)
    for entry in entries:
        present.add(entry.name)
        path = f"{rel}/{entry.name}"
        st = entry.stat(follow_symlinks=False)
        below = lower.lookup(entry.name)
        if is_whiteout(st):
            if below is not None:
                out.append((path, CHANGE_DELETE))
            continue
        if below is None:
            out.append((path, CHANGE_ADD))
            if stat.S_ISDIR(st.st_mode):
                _add_all(entry.path, path, out)
            continue
        lower_path, lst = below
        changed = _differs(entry.path, st, lower_path, lst)
        if changed:
            out.append((path, CHANGE_MODIFY))
        if stat.S_ISDIR(st.st_mode):
            lower_is_dir = stat.S_ISDIR(lst.st_mode)
            sub = lower.child(entry.name) if lower_is_dir else LowerView([])
            sub_opaque = opaque or not lower_is_dir or is_opaque(entry.path)
            if _compare(entry.path, sub, path, sub_opaque, out) and not changed:
                out.append((path, CHANGE_MODIFY))
    if opaque:
        out.extend((f"{rel}/{name}", CHANGE_DELETE) for name in lower.names() - present)
    return len(out) > start


def changes(upper: str, lowers: list[str]) -> list[Change]:
    """Changes of the layer whose upper dir is `upper` over the stack `lowers` (nearest
    first), sorted by path."""
    found: list[tuple[str, str]] = []
    _compare(upper, LowerView(lowers), "", False, found)
    return sorted(Change(path, kind) for path, kind in found)

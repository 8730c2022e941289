"""The undo journal that makes `apply_layer` all-or-nothing without copying data.

What a layer tar does to a tree is a sequence of three kinds of step, each of which is
cheap to undo if recorded before it happens:
- it creates a path: remember the path; undo removes it;
- it replaces or deletes an existing path: *rename* the old entry into a journal
  directory inside the root (same filesystem, same btrfs subvolume, so the rename is
  O(1) and never copies), undo renames it back;
- it changes attributes of an existing directory (a directory over a directory, or the
  mtime of a parent whose entries change): record them once, undo restores them.
Undo replays the record backwards, which restores the tree exactly (contents, modes,
owners, xattrs, directory times); commit just deletes the journal directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from dataclasses import dataclass

from .resolve import DirCache, openat2_in_root, split

JOURNAL_PREFIX = ".strata-apply-"


@dataclass(slots=True)
class DirAttrs:
    """Everything `apply` may change about an existing directory itself."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    xattrs: dict[str, bytes]

    @classmethod
    def of_fd(cls, fd: int) -> DirAttrs:
        st = os.fstat(fd)
        return cls(
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns, read_xattrs(fd)
        )

    def restore(self, fd: int) -> None:
        os.fchown(fd, self.uid, self.gid)
        os.fchmod(fd, self.mode)
        current = read_xattrs(fd)
        for key in current.keys() - self.xattrs.keys():
            os.removexattr(fd, key)
        for key, value in self.xattrs.items():
            if current.get(key) != value:
                os.setxattr(fd, key, value)
        os.utime(fd, ns=(self.atime_ns, self.mtime_ns))


def read_xattrs(target: int | str | bytes, *, follow_symlinks: bool = True) -> dict[str, bytes]:
    try:
        names = os.listxattr(target, follow_symlinks=follow_symlinks)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    return {name: os.getxattr(target, name, follow_symlinks=follow_symlinks) for name in names}


class Journal:
    """Records the steps of one apply; `rollback()` or `commit()` ends it."""

    def __init__(self, cache: DirCache) -> None:
        self.cache = cache
        self._steps: list[tuple[str, str, object]] = []
        self._times: dict[str, tuple[int, int]] = {}  # dir path -> (atime, mtime) before its entries changed
        self._attrs_saved: set[str] = set()
        self.name = JOURNAL_PREFIX + uuid.uuid4().hex
        self._fd: int | None = None
        self._count = 0
        root_stat = os.fstat(cache.root_fd)
        self.root_times = (root_stat.st_atime_ns, root_stat.st_mtime_ns)

    # -- recording ---------------------------------------------------------------------

    def touch(self, parent: str, parent_fd: int) -> None:
        """`parent`'s entries are about to change: keep its times for undo (once)."""
        if parent not in self._times:
            st = os.fstat(parent_fd)
            self._times[parent] = (st.st_atime_ns, st.st_mtime_ns)

    def created(self, path: str) -> None:
        self._steps.append(("new", path, None))

    def save_attrs(self, path: str, fd: int) -> None:
        """An existing directory's own attributes are about to change (once per path)."""
        if path not in self._attrs_saved:
            self._attrs_saved.add(path)
            attrs = DirAttrs.of_fd(fd)
            self._steps.append(("attrs", path, attrs))
            self._times.setdefault(path, (attrs.atime_ns, attrs.mtime_ns))

    def touched(self, path: str) -> bool:
        """Did the archive change the entries (or attributes) of directory `path`?"""
        return path in self._times

    def stash(self, path: str, parent_fd: int, name: str) -> None:
        """Move the existing entry `name` of `parent_fd` (at `path`) out of the way, for undo."""
        if self._fd is None:
            os.mkdir(self.name, 0o700, dir_fd=self.cache.root_fd)
            self._fd = os.open(self.name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.cache.root_fd)
        self._count += 1
        slot = str(self._count)
        os.rename(name, slot, src_dir_fd=parent_fd, dst_dir_fd=self._fd)
        self._steps.append(("moved", path, slot))

    def is_journal(self, parent: str, name: str) -> bool:
        return parent == "" and name == self.name

    # -- ending ------------------------------------------------------------------------

    def commit(self) -> None:
        """Forget the old entries; the root's mtime is then fixed by the caller."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            shutil.rmtree(self.name, dir_fd=self.cache.root_fd)

    def rollback(self) -> None:
        """Undo every recorded step, newest first, then restore directory times."""
        self.cache.clear()  # the cached fds may point anywhere now
        self.cache.release()
        root_fd = self.cache.root_fd
        for kind, path, extra in reversed(self._steps):
            if kind == "new":
                _remove(root_fd, path)
            elif kind == "moved":
                parent, name = split(path)
                with _opened(root_fd, parent, os.O_PATH) as pfd:
                    _remove_at(pfd, name)  # whatever the archive put there since
                    assert self._fd is not None
                    os.rename(str(extra), name, src_dir_fd=self._fd, dst_dir_fd=pfd)
            else:
                assert isinstance(extra, DirAttrs)
                with _opened(root_fd, path, os.O_RDONLY) as fd:
                    extra.restore(fd)
        self.commit()  # the journal directory is empty now
        for path, times in sorted(self._times.items(), reverse=True):
            if path:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError), _opened(
                    root_fd, path, os.O_RDONLY
                ) as fd:
                    os.utime(fd, ns=times)
        with _opened(root_fd, "", os.O_RDONLY) as fd:
            os.utime(fd, ns=self.root_times)


@contextlib.contextmanager
def _opened(root_fd: int, path: str, flags: int):
    fd = openat2_in_root(root_fd, path or ".", flags | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _remove(root_fd: int, path: str) -> None:
    parent, name = split(path)
    try:
        with _opened(root_fd, parent, os.O_PATH) as pfd:
            _remove_at(pfd, name)
    except (FileNotFoundError, NotADirectoryError):
        pass  # its parent is gone already (removed or moved back out of the way)


def _remove_at(parent_fd: int, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent_fd)
    else:
        os.unlink(name, dir_fd=parent_fd)

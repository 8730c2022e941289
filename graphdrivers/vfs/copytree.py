"""A complete, faithful copy of a directory tree: what a vfs layer is made of.

vfs has no copy-on-write, so every layer is a full copy of its parent and the copy must
lose nothing a container could observe: file data (holes kept), modes including
setuid/setgid/sticky, owners, xattrs (ACLs and file capabilities are xattrs), hard-link
structure, symlinks, fifos, sockets and device nodes, and the times of every entry.

The walk is written for speed because `create` is what vfs users wait for: one lstat
per entry (from scandir), file data copied in the kernel with copy_file_range (which on
a reflink-capable filesystem may share extents instead of copying), and syscalls that
would not change anything are skipped. Directory attributes are applied last, deepest
first, so writing a directory's children neither bumps its mtime afterwards nor lets
its setgid bit or default ACL leak into the copies.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

COPY_RANGE = "copy_file_range"
COPY_FULL = "full"

_CHUNK = 1 << 30  # copy_file_range count per call (the kernel caps a call at ~2 GiB)
_BUF = 1 << 20  # read/write buffer for byte copies
# Errors after which copy_file_range cannot work for this pair of files; fall back to bytes.
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


@dataclass
class _Walk:
    method: str
    euid: int = field(default_factory=os.geteuid)
    egid: int = field(default_factory=os.getegid)
    umask: int = 0o022
    links: dict[tuple[int, int], str] = field(default_factory=dict)
    dirs: list[tuple[str, str, os.stat_result]] = field(default_factory=list)
    range_ok: bool = True
    # O_NOATIME leaves the parent layer's access times as they were (root only).
    read_flags: int = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_NOATIME if os.geteuid() == 0 else 0)


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def copy_tree(src: str, dst: str, method: str = COPY_RANGE) -> None:
    """Copy the tree at `src` into `dst`, an empty directory the caller made (so it can
    prepare it first, e.g. with a project quota); `dst` ends with `src`'s attributes.

    `method` is COPY_RANGE (copy_file_range, falling back to bytes where the kernel
    cannot) or COPY_FULL (read/write byte copies only). On failure `dst` is left partly
    written; the caller builds into a temporary name and removes it.
    """
    walk = _Walk(method=method, umask=current_umask())
    root_st = os.lstat(src)
    walk.dirs.append((src, dst, root_st))
    _copy_dir(src, dst, walk)
    for s, d, st in reversed(walk.dirs):
        _set_dir_attrs(s, d, st, walk)


def _copy_dir(src: str, dst: str, walk: _Walk) -> None:
    stack = [(src, dst)]
    while stack:
        src_dir, dst_dir = stack.pop()
        with os.scandir(src_dir) as entries:
            for entry in entries:
                s = entry.path
                d = os.path.join(dst_dir, entry.name)
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(d, 0o700)
                    walk.dirs.append((s, d, st))
                    stack.append((s, d))
                elif st.st_nlink > 1 and _link_existing(d, st, walk):
                    continue
                else:
                    if stat.S_ISREG(mode):
                        _copy_file(s, d, st, walk)
                    elif stat.S_ISLNK(mode):
                        os.symlink(os.readlink(s), d)
                        _set_attrs_nofollow(s, d, st)
                    else:  # fifo, socket, character or block device
                        os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
                        _set_attrs_path(s, d, st)
                    if st.st_nlink > 1:
                        walk.links[(st.st_dev, st.st_ino)] = d


def _link_existing(dst: str, st: os.stat_result, walk: _Walk) -> bool:
    """Recreate a hard link to an inode already copied; False when this is its first name."""
    first = walk.links.get((st.st_dev, st.st_ino))
    if first is None:
        return False
    os.link(first, dst, follow_symlinks=False)
    return True


def _copy_file(src: str, dst: str, st: os.stat_result, walk: _Walk) -> None:
    perm = stat.S_IMODE(st.st_mode)
    sfd = os.open(src, walk.read_flags)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, perm & 0o777 | 0o200)
        try:
            if st.st_size:
                _copy_data(sfd, dfd, st, walk)
            _set_fd_attrs(sfd, dfd, st, walk, created_perm=(perm & 0o777 | 0o200) & ~walk.umask)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_data(sfd: int, dfd: int, st: os.stat_result, walk: _Walk) -> None:
    if st.st_blocks * 512 < st.st_size:  # fewer blocks than bytes: there are holes to keep
        _copy_sparse(sfd, dfd, st.st_size, walk)
    else:
        _copy_range(sfd, dfd, 0, st.st_size, walk)


def _copy_sparse(sfd: int, dfd: int, size: int, walk: _Walk) -> None:
    pos = 0
    while pos < size:
        try:
            data = os.lseek(sfd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        hole = min(os.lseek(sfd, data, os.SEEK_HOLE), size)
        _copy_range(sfd, dfd, data, hole - data, walk)
        pos = hole
    os.ftruncate(dfd, size)


def _copy_range(sfd: int, dfd: int, offset: int, length: int, walk: _Walk) -> None:
    """Copy `length` bytes at `offset` (same offset in both files)."""
    end = offset + length
    if walk.method == COPY_RANGE and walk.range_ok:
        try:
            while offset < end:
                n = os.copy_file_range(sfd, dfd, min(_CHUNK, end - offset), offset, offset)
                if n == 0:  # the source shrank under us; copy what there is
                    return
                offset += n
            return
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            walk.range_ok = False  # this filesystem pair cannot; bytes for the rest
    buf = bytearray(min(_BUF, length))
    view = memoryview(buf)
    while offset < end:
        n = os.preadv(sfd, [view[: min(len(buf), end - offset)]], offset)
        if n == 0:
            return
        written = 0
        while written < n:
            written += os.pwrite(dfd, view[written:n], offset + written)
        offset += n


def _set_fd_attrs(sfd: int, dfd: int, st: os.stat_result, walk: _Walk, created_perm: int) -> None:
    # Order matters: chown clears setuid/setgid and file capabilities, so owner first,
    # then mode, then xattrs (security.capability), then times (every change bumps ctime
    # only, but data writes above bumped mtime).
    if st.st_uid != walk.euid or st.st_gid != walk.egid:
        os.fchown(dfd, st.st_uid, st.st_gid)
    perm = stat.S_IMODE(st.st_mode)
    if perm != created_perm:
        os.fchmod(dfd, perm)
    for name in os.listxattr(sfd):
        os.setxattr(dfd, name, os.getxattr(sfd, name))
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _set_attrs_path(src: str, dst: str, st: os.stat_result) -> None:
    """Attributes of a special file (no fd to open without side effects)."""
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst, follow=True)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _set_attrs_nofollow(src: str, dst: str, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    _copy_xattrs(src, dst, follow=False)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str, *, follow: bool) -> None:
    for name in os.listxattr(src, follow_symlinks=follow):
        os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=follow), follow_symlinks=follow)


def _set_dir_attrs(src: str, dst: str, st: os.stat_result, walk: _Walk) -> None:
    """Owner, mode, xattrs and times of a copied directory (applied after its children)."""
    if st.st_uid != walk.euid or st.st_gid != walk.egid:
        os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst, follow=True)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))

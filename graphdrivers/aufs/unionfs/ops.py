"""pyfuse3 low-level operations over a `Union`.

Each handler is a thin translation: resolve the inode, let `tree.Union` apply the aufs
rule, answer with attributes. Data moves with pread/pwrite on the branch file's own
descriptor (one call per FUSE request, requests up to 1 MiB), and read-only branches are
cached by the kernel: their files keep their page cache across opens and their entries
and attributes are cached for an hour, since nothing can change them underneath.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import stat
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pyfuse3

from .tree import Node, Union

RO_TIMEOUT = 3600.0  # read-only branches never change while mounted
RW_TIMEOUT = 1.0  # the writable branch is only changed through us, but stay modest
BLKSIZE = 128 * 1024  # st_blksize: invites applications to use large reads

_OPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_APPEND  # the kernel resolves appends itself

T = TypeVar("T")


def _fuse_errors(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """OSError from a branch becomes the same errno for the caller. Any other exception
    is a bug: it is logged and answered with EIO, because pyfuse3 would otherwise end
    the whole mount (a container's rootfs) over one failed request."""

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> T:
        try:
            return await fn(*args)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except pyfuse3.FUSEError:
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


class UnionOperations(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, union: Union) -> None:
        super().__init__()
        self.u = union
        self._rw_fds: set[int] = set()  # descriptors opened in the writable branch
        self._dirs: dict[int, tuple[Node, list[bytes]]] = {}
        self._dir_handles = itertools.count(1)

    # -- attributes --------------------------------------------------------------------

    def _attr(self, node: Node) -> pyfuse3.EntryAttributes:
        read_only = node.entry.branch > 0 and not node.unlinked
        if read_only and node.attr is not None:
            return node.attr  # type: ignore[return-value]
        st = node.st if node.unlinked else self.u.stat(node)
        assert st is not None
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.st_mode = st.st_mode
        dirs = node.entry.dirs
        # a merged directory's link count cannot be known cheaply; 1 means "unknown" to find(1)
        a.st_nlink = 1 if dirs is not None and len(dirs) > 1 else (0 if node.unlinked else st.st_nlink)
        a.st_uid = st.st_uid
        a.st_gid = st.st_gid
        a.st_rdev = st.st_rdev
        a.st_size = st.st_size
        a.st_blksize = BLKSIZE
        a.st_blocks = st.st_blocks
        a.st_atime_ns = st.st_atime_ns
        a.st_mtime_ns = st.st_mtime_ns
        a.st_ctime_ns = st.st_ctime_ns
        timeout = RO_TIMEOUT if node.entry.branch else RW_TIMEOUT
        a.attr_timeout = timeout
        a.entry_timeout = timeout
        if read_only:
            node.attr = a
        return a

    @_fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.u.lookup(self.u.get(parent_inode), name)
        if node is None:
            negative = pyfuse3.EntryAttributes()  # inode 0: the kernel caches "no such name"
            negative.st_ino = 0
            negative.entry_timeout = RW_TIMEOUT
            return negative
        return self._attr(node)

    async def forget(self, inode_list: Any) -> None:
        """Inodes are kept while mounted, so their numbers stay stable."""

    @_fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(self.u.get(inode))

    @_fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self.u.get(inode)
        self.u.copy_up(node)
        # an open writable-branch descriptor also reaches files already unlinked
        target: int | bytes = fh if fh is not None and fh in self._rw_fds else self.u.real(node)
        is_link = stat.S_ISLNK(self.u.stat(node).st_mode) if not node.unlinked else False
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            if isinstance(target, int):
                os.fchown(target, uid, gid)
            else:
                os.lchown(target, uid, gid)
        if fields.update_mode and not is_link:
            os.chmod(target, stat.S_IMODE(attr.st_mode))
        if fields.update_size:
            os.truncate(target, attr.st_size)
        if fields.update_atime or fields.update_mtime:
            current = os.fstat(target) if isinstance(target, int) else os.lstat(target)
            times = (
                attr.st_atime_ns if fields.update_atime else current.st_atime_ns,
                attr.st_mtime_ns if fields.update_mtime else current.st_mtime_ns,
            )
            if isinstance(target, int):
                os.utime(target, ns=times)
            else:
                os.utime(target, ns=times, follow_symlinks=False)
        node.st = None
        if node.unlinked and isinstance(target, int):
            node.st = os.fstat(target)
        return self._attr(node)

    @_fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.readlink(self.u.real(self.u.get(inode)))

    @_fuse_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        return True  # default_permissions: the kernel checks modes itself

    @_fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        sv = os.statvfs(self.u.rw)
        out = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
            setattr(out, name, getattr(sv, name))
        out.f_namemax = sv.f_namemax - len(b".wh.")  # room for the whiteout prefix
        return out

    # -- directories -------------------------------------------------------------------

    @_fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self.u.get(inode)
        handle = next(self._dir_handles)
        self._dirs[handle] = (node, list(self.u.listing(node)))
        return handle

    @_fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        node, names = self._dirs[fh]
        for i in range(start_id, len(names)):
            child = self.u.lookup(node, names[i])
            if child is None:
                continue  # removed since opendir
            if not pyfuse3.readdir_reply(token, names[i], self._attr(child), i + 1):
                break

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        pass

    @_fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        os.mkdir(path, stat.S_IMODE(mode))
        try:
            self._own(path, parent, ctx, mode, is_dir=True)
        except BaseException:
            os.rmdir(path)
            raise
        return self._attr(self.u.added(parent, name, is_dir=True, whited_out=whited_out))

    @_fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.u.remove(self.u.get(parent_inode), name, want_dir=True)

    # -- names -------------------------------------------------------------------------

    def _own(self, path: bytes, parent: Node, ctx: pyfuse3.RequestContext, mode: int, *, is_dir: bool) -> None:
        """Give a new object the caller's owner (the group of a setgid parent) and exact mode."""
        parent_mode = self.u.stat(parent).st_mode
        setgid_parent = bool(parent_mode & stat.S_ISGID)
        os.chown(path, ctx.uid, -1 if setgid_parent else ctx.gid, follow_symlinks=False)
        if stat.S_ISLNK(mode):
            return
        wanted = stat.S_IMODE(mode) | (stat.S_ISGID if is_dir and setgid_parent else 0)
        if wanted & 0o7000:
            os.chmod(path, wanted)  # chown cleared setuid/setgid; mkdir ignores them

    @_fuse_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        os.mknod(path, mode, rdev)
        try:
            self._own(path, parent, ctx, mode, is_dir=False)
        except BaseException:
            os.unlink(path)
            raise
        return self._attr(self.u.added(parent, name, is_dir=False, whited_out=whited_out))

    @_fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        os.symlink(target, path)
        try:
            self._own(path, parent, ctx, stat.S_IFLNK | 0o777, is_dir=False)
        except BaseException:
            os.unlink(path)
            raise
        return self._attr(self.u.added(parent, name, is_dir=False, whited_out=whited_out))

    @_fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        node = self.u.link(self.u.get(inode), self.u.get(new_parent_inode), new_name)
        node.st = None
        return self._attr(node)

    @_fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.u.remove(self.u.get(parent_inode), name, want_dir=False)

    @_fuse_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "RENAME_EXCHANGE is not supported by aufs")
        self.u.rename(
            self.u.get(parent_inode_old),
            name_old,
            self.u.get(parent_inode_new),
            name_new,
            noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
        )

    # -- files -------------------------------------------------------------------------

    @_fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.u.get(inode)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            self.u.copy_up(node)
        flags &= ~_OPEN_STRIP
        if node.entry.branch:
            flags |= os.O_NOATIME  # reading through a union must not touch a read-only layer
        fd = os.open(self.u.real(node), flags)
        info = pyfuse3.FileInfo(fh=fd)
        if node.entry.branch:
            info.keep_cache = True  # a read-only branch cannot change: keep its page cache
        else:
            self._rw_fds.add(fd)
            node.st = None
        return info

    @_fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        fd = os.open(path, (flags & ~_OPEN_STRIP) | os.O_CREAT | os.O_EXCL, stat.S_IMODE(mode))
        try:
            self._own(path, parent, ctx, mode, is_dir=False)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        self._rw_fds.add(fd)
        node = self.u.added(parent, name, is_dir=False, whited_out=whited_out)
        return pyfuse3.FileInfo(fh=fd), self._attr(node)

    @_fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(fh, size, off)

    @_fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(fh, buf, off)

    async def flush(self, fh: int) -> None:
        pass

    @_fuse_errors
    async def release(self, fh: int) -> None:
        self._rw_fds.discard(fh)
        os.close(fh)

    @_fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    # -- extended attributes -----------------------------------------------------------

    @_fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return os.getxattr(self.u.real(self.u.get(inode)), name, follow_symlinks=False)  # ENODATA is ENOATTR

    @_fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [os.fsencode(n) for n in os.listxattr(self.u.real(self.u.get(inode)), follow_symlinks=False)]

    @_fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self.u.get(inode)
        self.u.copy_up(node)
        os.setxattr(self.u.real(node), name, value, follow_symlinks=False)
        node.st = None

    @_fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self.u.get(inode)
        self.u.copy_up(node)
        os.removexattr(self.u.real(node), name, follow_symlinks=False)
        node.st = None

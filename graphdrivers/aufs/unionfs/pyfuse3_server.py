"""The union served through pyfuse3 (libfuse 3, trio): strata-aufs' second FUSE server.

The direct server (`session`) speaks the kernel protocol itself because libfuse 3.14
cannot negotiate passthrough; this one lets libfuse do it, so the two can be compared
and the direct one checked against a reference implementation of the protocol. Both are
thin adapters over the same `ops.UnionOperations` (and through it the same
`tree.Union`, every aufs rule): this module only converts pyfuse3's arguments into
theirs and their answers (packed in the kernel's layout, see `ops.Attributes`) into
pyfuse3's objects. File data is always served by this process (pread/pwrite on the
branch file): pyfuse3 has no passthrough. pyfuse3 exposes no fallocate or lseek
handler, so those answer ENOSYS and the kernel's generic SEEK_DATA/SEEK_HOLE applies.

Only an errno leaves a handler: pyfuse3 ends its main loop on any exception other than
FUSEError, which would take a container's root filesystem down with one bad request.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import pyfuse3
import trio

from . import abi
from .ops import Attributes, UnionOperations

log = logging.getLogger(__name__)

_SIGN = 1 << 63


def _ns(sec: int, nsec: int) -> int:
    """Nanoseconds from the kernel's u64 seconds (two's complement before 1970) + nsec."""
    return ((sec - (1 << 64)) if sec >= _SIGN else sec) * 10**9 + nsec


def entry_attributes(a: Attributes) -> pyfuse3.EntryAttributes:
    """The same answer the direct server sends, as pyfuse3's object (node id 0: negative)."""
    (nodeid, generation, entry_valid, attr_valid, entry_nsec, attr_nsec, _ino, size, blocks,
     atime, mtime, ctime, atime_nsec, mtime_nsec, ctime_nsec, mode, nlink, uid, gid, rdev, blksize,
     _flags) = abi.ENTRY_OUT_WITH_ATTR.unpack(a.entry)  # fmt: skip
    e = pyfuse3.EntryAttributes()
    e.st_ino = nodeid
    e.generation = generation
    e.entry_timeout = entry_valid + entry_nsec / 1e9
    e.attr_timeout = attr_valid + attr_nsec / 1e9
    if nodeid:
        e.st_mode, e.st_nlink, e.st_uid, e.st_gid, e.st_rdev = mode, nlink, uid, gid, rdev
        e.st_size, e.st_blocks, e.st_blksize = size, blocks, blksize
        e.st_atime_ns = _ns(atime, atime_nsec)
        e.st_mtime_ns = _ns(mtime, mtime_nsec)
        e.st_ctime_ns = _ns(ctime, ctime_nsec)
    return e


def _errno_only(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Make a synchronous handler pyfuse3's coroutine; OSError becomes its errno, anything
    else is a bug: logged with its traceback and answered with EIO."""

    @functools.wraps(handler)
    async def run(*args: Any) -> Any:
        try:
            return handler(*args)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except pyfuse3.FUSEError:
            raise
        except Exception:
            log.exception("pyfuse3 handler %s failed", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return run


def _file_info(opened: tuple[int, int, int]) -> pyfuse3.FileInfo:
    fh, flags, _backing = opened  # no backing without passthrough
    return pyfuse3.FileInfo(fh=fh, keep_cache=bool(flags & abi.FOPEN_KEEP_CACHE))


class Pyfuse3Operations(pyfuse3.Operations):
    """pyfuse3's operations, each a translation to `UnionOperations`.

    Handlers never await: they run the shared synchronous operations to completion, so
    requests are answered one at a time, as in the direct server."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, ops: UnionOperations) -> None:
        super().__init__()
        self.ops = ops

    @_errno_only
    def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.ops.lookup(parent_inode, name))

    @_errno_only
    def forget(self, inode_list: list[tuple[int, int]]) -> None:
        return None  # node ids live as long as the mount: nothing to forget

    @_errno_only
    def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.ops.getattr(inode))

    @_errno_only
    def setattr(
        self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields, fh: int | None, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        changed = self.ops.setattr(
            inode,
            fh=fh,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
        )
        return entry_attributes(changed)

    @_errno_only
    def readlink(self, inode: int, ctx: Any) -> bytes:
        return self.ops.readlink(inode)

    @_errno_only
    def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.ops.mknod(parent_inode, name, mode, rdev, ctx.uid, ctx.gid))

    @_errno_only
    def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.ops.mkdir(parent_inode, name, mode, ctx.uid, ctx.gid))

    @_errno_only
    def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self.ops.unlink(parent_inode, name)

    @_errno_only
    def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self.ops.rmdir(parent_inode, name)

    @_errno_only
    def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.ops.symlink(parent_inode, name, target, ctx.uid, ctx.gid))

    @_errno_only
    def rename(
        self, parent_old: int, name_old: bytes, parent_new: int, name_new: bytes, flags: int, ctx: Any
    ) -> None:
        self.ops.rename(parent_old, name_old, parent_new, name_new, flags)

    @_errno_only
    def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.ops.link(inode, new_parent_inode, new_name))

    @_errno_only
    def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        return _file_info(self.ops.open(inode, flags))

    @_errno_only
    def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        attr, opened = self.ops.create(parent_inode, name, mode, flags, ctx.uid, ctx.gid)
        return _file_info(opened), entry_attributes(attr)

    @_errno_only
    def read(self, fh: int, off: int, size: int) -> bytes:
        return self.ops.read(fh, size, off)

    @_errno_only
    def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(fh, buf, off)

    @_errno_only
    def flush(self, fh: int) -> None:
        return None

    @_errno_only
    def release(self, fh: int) -> None:
        self.ops.release(fh)

    @_errno_only
    def fsync(self, fh: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    @_errno_only
    def opendir(self, inode: int, ctx: Any) -> int:
        return self.ops.opendir(inode)

    @_errno_only
    def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        for index, name, attr, _mode in self.ops.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, name, entry_attributes(attr), index + 1):
                break  # the kernel's buffer is full; it asks again from index + 1

    @_errno_only
    def releasedir(self, fh: int) -> None:
        self.ops.releasedir(fh)

    @_errno_only
    def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None

    @_errno_only
    def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        blocks, bfree, bavail, files, ffree, bsize, namemax, frsize = abi.STATFS_OUT.unpack(self.ops.statfs())[:8]
        s = pyfuse3.StatvfsData()
        s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree = blocks, bfree, bavail, files, ffree
        s.f_favail, s.f_bsize, s.f_frsize, s.f_namemax = ffree, bsize, frsize, namemax
        return s

    @_errno_only
    def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        self.ops.setxattr(inode, name, value, 0)  # pyfuse3 checks XATTR_CREATE/REPLACE itself

    @_errno_only
    def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        return self.ops.getxattr(inode, name)

    @_errno_only
    def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return self.ops.listxattr(inode)

    @_errno_only
    def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        self.ops.removexattr(inode, name)

    @_errno_only
    def access(self, inode: int, mode: int, ctx: Any) -> bool:
        return True  # default_permissions: the kernel checks modes itself


def serve(ops: UnionOperations, mountpoint: str, *, fsname: str, ready: Callable[[], None]) -> None:
    """Mount through libfuse, call `ready()`, serve until unmounted.

    The mount looks like the direct server's (source and type name `fsname`, setuid
    binaries and device nodes allowed: libfuse's default is nosuid,nodev)."""
    options = {f"fsname={fsname}", f"subtype={fsname}", "default_permissions", "allow_other", "suid", "dev"}
    pyfuse3.init(Pyfuse3Operations(ops), mountpoint, options)
    unmounted = False
    try:
        ready()
        # handlers block (they are the shared synchronous operations): more tasks add nothing
        trio.run(functools.partial(pyfuse3.main, min_tasks=1, max_tasks=1))
        unmounted = True  # the loop ends when the kernel says the mount is gone
    finally:
        pyfuse3.close(unmount=not unmounted)

"""One FUSE connection: mount, negotiate, then answer the kernel's requests one by one.

A plain blocking loop on /dev/fuse: a request is read into one reused buffer, decoded,
handed to the operations, and answered with one writev. The loop ends when the mount
goes away (the device answers ENODEV). Operations raise OSError with the errno the
caller should see; only that errno leaves a handler. A malformed request (shorter than
it says, a body too short for its operation, an opcode this server does not know) is
logged and answered with an errno; any other exception is a bug, logged with its
traceback and answered with EIO, because one failed request must not take a
container's root filesystem down.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ... import fsmagic, mountutil
from . import abi

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .ops import Attributes, UnionOperations

STACKED_FILESYSTEMS = frozenset({"overlayfs", "fuse", "ecryptfs"})


def serve(ops: UnionOperations, mountpoint: str, *, passthrough: bool, fsname: str, ready: Callable[[], None]) -> None:
    """The direct server: mount, negotiate, call `ready()`, answer requests until unmounted."""
    session = Session(ops, mountpoint, passthrough=passthrough, fsname=fsname)
    session.mount()
    try:
        ready()
    except BaseException:
        session.abort()
        raise
    session.serve()


class Session:
    def __init__(self, ops: UnionOperations, mountpoint: str, *, passthrough: bool, fsname: str) -> None:
        self.ops = ops
        self.mountpoint = mountpoint
        self.want_passthrough = passthrough
        self.fsname = fsname
        self.fd = -1
        self.buf = bytearray(abi.BUFFER_SIZE)
        self._initialised: bool | None = None  # None until INIT came; False if it was refused
        self._handlers: dict[int, Callable[[int, memoryview, int, int], bytes | None]] = self._table()
        self._unknown_seen: set[int] = set()

    # -- connection --------------------------------------------------------------------

    def mount(self) -> None:
        """Mount and answer INIT, so the filesystem is live when this returns."""
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        options = (
            f"fd={self.fd},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()},default_permissions,allow_other"
        )
        mountutil.mount(self.fsname, self.mountpoint, f"fuse.{self.fsname}", 0, options)
        try:
            while self._initialised is None:
                self._serve_one()
            if not self._initialised:
                raise OSError(errno.EPROTO, f"the kernel's FUSE protocol is older than 7.{abi.MIN_MINOR}")
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            mountutil.umount(self.mountpoint, mountutil.MNT_DETACH)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def serve(self) -> None:
        """Answer requests until the filesystem is unmounted."""
        while self._serve_one():
            pass
        self.close()

    def _serve_one(self) -> bool:
        """Read and answer one request; False once the filesystem is unmounted."""
        buf = self.buf
        try:
            n = os.readv(self.fd, [buf])
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False  # unmounted
            if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                return True  # ENOENT: the request was interrupted before we read it
            raise
        if n < abi.IN_HEADER.size:
            log.warning("dropped a FUSE request of %d bytes: shorter than its header", n)
            return True  # no request id to answer
        length, opcode, unique, nodeid, uid, gid, _pid, extlen, _ = abi.IN_HEADER.unpack_from(buf)
        if n < length or length < abi.IN_HEADER.size + 8 * extlen:
            log.warning("malformed FUSE request (opcode %d): %d bytes read, header says %d", opcode, n, length)
            self._reply_error(opcode, unique, errno.EIO)
            return True
        body = memoryview(buf)[abi.IN_HEADER.size : length - 8 * extlen]
        handler = self._handlers.get(opcode)
        try:
            if handler is None:
                self._unknown(opcode)
                raise OSError(errno.ENOSYS, "not implemented")
            payload = handler(nodeid, body, uid, gid)
        except OSError as exc:
            self._reply_error(opcode, unique, exc.errno or errno.EIO)
        except struct.error as exc:  # the body is too short for the operation's struct
            log.warning("malformed FUSE request (opcode %d, %d body bytes): %s", opcode, len(body), exc)
            self._reply_error(opcode, unique, errno.EINVAL)
        except Exception:
            log.exception("FUSE operation %d on node %d failed", opcode, nodeid)
            self._reply_error(opcode, unique, errno.EIO)
        else:
            if opcode not in abi.NO_REPLY:
                self._reply(unique, payload or b"")
        finally:
            body.release()
        return True

    def _unknown(self, opcode: int) -> None:
        """Log an operation this server does not implement, once per opcode: the kernel
        tries some (ioctl, poll, locks...) on every call, and ENOSYS is the answer."""
        if opcode not in self._unknown_seen:
            self._unknown_seen.add(opcode)
            log.warning("FUSE opcode %d is not implemented; answering ENOSYS", opcode)

    def _reply(self, unique: int, payload: bytes | memoryview) -> None:
        try:
            os.writev(self.fd, [abi.OUT_HEADER.pack(abi.OUT_HEADER.size + len(payload), 0, unique), payload])
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: the caller was interrupted meanwhile
                raise

    def _reply_error(self, opcode: int, unique: int, code: int) -> None:
        if opcode in abi.NO_REPLY:
            return
        try:
            os.write(self.fd, abi.OUT_HEADER.pack(abi.OUT_HEADER.size, -code, unique))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    # -- decoding ----------------------------------------------------------------------

    def _table(self) -> dict[int, Callable[[int, memoryview, int, int], bytes | None]]:
        return {
            abi.INIT: self._init,
            abi.LOOKUP: self._lookup,
            abi.FORGET: _ignore,
            abi.BATCH_FORGET: _ignore,
            abi.INTERRUPT: _ignore,  # requests are answered in order; none waits to be cut short
            abi.GETATTR: self._getattr,
            abi.SETATTR: self._setattr,
            abi.READLINK: lambda node, body, uid, gid: self.ops.readlink(node),
            abi.SYMLINK: self._symlink,
            abi.MKNOD: self._mknod,
            abi.MKDIR: self._mkdir,
            abi.UNLINK: lambda node, body, uid, gid: self.ops.unlink(node, _name(body)),
            abi.RMDIR: lambda node, body, uid, gid: self.ops.rmdir(node, _name(body)),
            abi.RENAME: self._rename,
            abi.RENAME2: self._rename2,
            abi.LINK: self._link,
            abi.OPEN: self._open,
            abi.CREATE: self._create,
            abi.READ: self._read,
            abi.WRITE: self._write,
            abi.FLUSH: _ignore,
            abi.RELEASE: self._release,
            abi.FSYNC: self._fsync,
            abi.FALLOCATE: self._fallocate,
            abi.LSEEK: self._lseek,
            abi.STATFS: lambda node, body, uid, gid: self.ops.statfs(),
            abi.SETXATTR: self._setxattr,
            abi.GETXATTR: self._getxattr,
            abi.LISTXATTR: self._listxattr,
            abi.REMOVEXATTR: lambda node, body, uid, gid: self.ops.removexattr(node, _name(body)),
            abi.OPENDIR: self._opendir,
            abi.READDIR: self._readdir,
            abi.READDIRPLUS: self._readdirplus,
            abi.RELEASEDIR: lambda node, body, uid, gid: self.ops.releasedir(abi.RELEASE_IN.unpack_from(body)[0]),
            abi.FSYNCDIR: _ignore,
            abi.ACCESS: _ignore,  # default_permissions: the kernel checks modes itself
            abi.DESTROY: _ignore,
        }

    def _init(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        major, minor, max_readahead, flags = abi.INIT_IN.unpack_from(body)
        if major != abi.KERNEL_VERSION or minor < abi.MIN_MINOR:
            self._initialised = False
            raise OSError(errno.EPROTO, f"FUSE protocol {major}.{minor} is not 7.{abi.MIN_MINOR} or newer")
        if flags & abi.INIT_EXT and len(body) >= abi.INIT_IN.size + 4:
            flags |= int.from_bytes(body[abi.INIT_IN.size : abi.INIT_IN.size + 4], "little") << 32
        want = flags & abi.WANTED
        depth = 0
        if self.want_passthrough and flags & abi.PASSTHROUGH and minor >= abi.MINOR_VERSION:
            want |= abi.PASSTHROUGH
            depth = self._stack_depth()
            self.ops.passthrough = abi.Passthrough(self.fd)
        if flags & abi.INIT_EXT:
            want |= abi.INIT_EXT
        self._initialised = True
        return abi.INIT_OUT.pack(
            abi.KERNEL_VERSION,
            min(minor, abi.MINOR_VERSION),
            max_readahead,
            want & 0xFFFFFFFF,
            16,  # max_background
            12,  # congestion_threshold
            abi.MAX_WRITE,
            1,  # time_gran: nanoseconds
            abi.MAX_PAGES_COUNT,
            0,
            want >> 32,
            depth,
        )

    def _stack_depth(self) -> int:
        """The depth the kernel lets backing files have: 1 over a plain filesystem, 2 when
        the branches are themselves on a stacking filesystem (as in a container)."""
        try:
            stacked = fsmagic.fs_name(self.ops.branch_root()) in STACKED_FILESYSTEMS
        except OSError:
            stacked = True
        return 2 if stacked else 1

    def _lookup(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        return self.ops.lookup(nodeid, _name(body)).entry

    def _attr_reply(self, attr: Attributes) -> bytes:
        sec, nsec = attr.timeout
        return abi.ATTR_OUT.pack(sec, nsec, 0) + attr.packed

    def _getattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        return self._attr_reply(self.ops.getattr(nodeid))

    def _setattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        (valid, _, fh, size, _, atime, mtime, _, atimensec, mtimensec, _, mode, _, a_uid, a_gid, _) = (
            abi.SETATTR_IN.unpack_from(body)
        )
        now = time.time_ns()
        atime_ns = atime * 10**9 + atimensec if valid & abi.FATTR_ATIME else None
        mtime_ns = mtime * 10**9 + mtimensec if valid & abi.FATTR_MTIME else None
        attr = self.ops.setattr(
            nodeid,
            fh=fh if valid & abi.FATTR_FH else None,
            mode=mode if valid & abi.FATTR_MODE else None,
            uid=a_uid if valid & abi.FATTR_UID else None,
            gid=a_gid if valid & abi.FATTR_GID else None,
            size=size if valid & abi.FATTR_SIZE else None,
            atime_ns=now if valid & abi.FATTR_ATIME_NOW else atime_ns,
            mtime_ns=now if valid & abi.FATTR_MTIME_NOW else mtime_ns,
        )
        return self._attr_reply(attr)

    def _symlink(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        name, target = _names(body, 2)
        return self.ops.symlink(nodeid, name, target, uid, gid).entry

    def _mknod(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        mode, rdev, _, _ = abi.MKNOD_IN.unpack_from(body)
        name = _name(body[abi.MKNOD_IN.size :])
        return self.ops.mknod(nodeid, name, mode, rdev, uid, gid).entry

    def _mkdir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        mode, _ = abi.MKDIR_IN.unpack_from(body)
        return self.ops.mkdir(nodeid, _name(body[abi.MKDIR_IN.size :]), mode, uid, gid).entry

    def _rename(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        (newdir,) = abi.RENAME_IN.unpack_from(body)
        old, new = _names(body[abi.RENAME_IN.size :], 2)
        self.ops.rename(nodeid, old, newdir, new, 0)

    def _rename2(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        newdir, flags, _ = abi.RENAME2_IN.unpack_from(body)
        old, new = _names(body[abi.RENAME2_IN.size :], 2)
        self.ops.rename(nodeid, old, newdir, new, flags)

    def _link(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        (old,) = abi.LINK_IN.unpack_from(body)
        return self.ops.link(old, nodeid, _name(body[abi.LINK_IN.size :])).entry

    def _open(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        flags, _ = abi.OPEN_IN.unpack_from(body)
        return abi.OPEN_OUT.pack(*self.ops.open(nodeid, flags))

    def _create(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        flags, mode, _, _ = abi.CREATE_IN.unpack_from(body)
        name = _name(body[abi.CREATE_IN.size :])
        attr, opened = self.ops.create(nodeid, name, mode, flags, uid, gid)
        return attr.entry + abi.OPEN_OUT.pack(*opened)

    def _read(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        fh, offset, size, *_ = abi.READ_IN.unpack_from(body)
        return self.ops.read(fh, size, offset)

    def _write(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        fh, offset, size, *_ = abi.WRITE_IN.unpack_from(body)
        data = body[abi.WRITE_IN.size : abi.WRITE_IN.size + size]
        return abi.WRITE_OUT.pack(os.pwrite(fh, data, offset), 0)

    def _release(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        self.ops.release(abi.RELEASE_IN.unpack_from(body)[0])

    def _fsync(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        fh, flags, _ = abi.FSYNC_IN.unpack_from(body)
        (os.fdatasync if flags & abi.FSYNC_FDATASYNC else os.fsync)(fh)

    def _fallocate(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        fh, offset, length, mode, _ = abi.FALLOCATE_IN.unpack_from(body)
        self.ops.fallocate(nodeid, fh, mode, offset, length)

    def _lseek(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        fh, offset, whence, _ = abi.LSEEK_IN.unpack_from(body)
        return abi.LSEEK_OUT.pack(os.lseek(fh, offset, whence))  # SEEK_DATA/SEEK_HOLE: the branch knows

    def _setxattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        size, flags = abi.SETXATTR_IN.unpack_from(body)
        rest = body[abi.SETXATTR_IN.size :]
        name = _name(rest)
        value = bytes(rest[len(name) + 1 : len(name) + 1 + size])
        self.ops.setxattr(nodeid, name, value, flags)

    def _getxattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        size, _ = abi.GETXATTR_IN.unpack_from(body)
        return _sized(self.ops.getxattr(nodeid, _name(body[abi.GETXATTR_IN.size :])), size)

    def _listxattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        size, _ = abi.GETXATTR_IN.unpack_from(body)
        return _sized(b"".join(name + b"\0" for name in self.ops.listxattr(nodeid)), size)

    def _opendir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        # The kernel may keep listings: every change to a directory comes through it (and
        # makes it drop its copy), so a listing read once is served from its page cache.
        return abi.OPEN_OUT.pack(self.ops.opendir(nodeid), abi.FOPEN_CACHE_DIR | abi.FOPEN_KEEP_CACHE, 0)

    def _readdir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        return self._listing(body, plus=False)

    def _readdirplus(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        return self._listing(body, plus=True)

    def _listing(self, body: memoryview, *, plus: bool) -> bytes:
        """As many entries as fit the kernel's buffer; with `plus`, each after its
        fuse_entry_out (the dirent itself carries the inode number, not a node id)."""
        fh, offset, size, *_ = abi.READ_IN.unpack_from(body)
        out, used = [], 0
        for index, name, attr, mode in self.ops.readdir(fh, offset):
            entry = abi.dirent(attr.ino, index + 1, name, mode)
            if plus:
                entry = attr.entry + entry
            if used + len(entry) > size:
                break
            out.append(entry)
            used += len(entry)
        return b"".join(out)


def _ignore(nodeid: int, body: memoryview, uid: int, gid: int) -> None:
    return None


def _name(body: memoryview) -> bytes:
    raw = bytes(body)
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def _names(body: memoryview, count: int) -> list[bytes]:
    return bytes(body).split(b"\0")[:count]


def _sized(value: bytes, size: int) -> bytes:
    """getxattr/listxattr: size 0 asks how long the answer is; a short buffer is ERANGE."""
    if size == 0:
        return abi.GETXATTR_OUT.pack(len(value), 0)
    if len(value) > size:
        raise OSError(errno.ERANGE, "buffer too small")
    return value

"""The union's FUSE operations: each resolves inodes, lets `tree.Union` apply the aufs
rule, and answers with attributes.

File data takes one of two ways. With passthrough (the kernel agreed at INIT), an open
file is backed by its branch file and the kernel reads, writes and maps it directly, as
overlayfs does: no byte crosses this process. Without it, data moves with pread/pwrite on
the branch file (requests up to 1 MiB), and files of read-only branches keep the kernel's
page cache across opens. Either way entries and attributes of read-only branches are
cached for an hour, since nothing can change them underneath.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import stat
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ... import mountutil, whiteouts
from ...lazy.layer import Activity
from . import abi
from .abi import Passthrough
from .tree import Node, Union

if TYPE_CHECKING:
    from ...lazy.layer import LazyLayer

RO_TIMEOUT = abi.split_time(3600.0)  # read-only branches never change while mounted
RW_TIMEOUT = abi.split_time(1.0)  # the writable branch is only changed through us, but stay modest
BLKSIZE = 128 * 1024  # st_blksize: invites applications to use large reads

_U64 = (1 << 64) - 1
_libc = ctypes.CDLL(None, use_errno=True)  # fallocate(2) with its modes: os has only posix_fallocate
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_OPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_APPEND  # the kernel resolves appends itself


class Attributes:
    """An inode's answer to the kernel, packed once as a whole fuse_entry_out (node id,
    how long it holds, fuse_attr): a lookup or a listing entry costs one pack, and a node
    of a read-only branch keeps its answer."""

    __slots__ = ("entry", "ino", "mode", "timeout")

    def __init__(self, ino: int, mode: int, entry: bytes, timeout: tuple[int, int]) -> None:
        self.ino = ino
        self.mode = mode
        self.entry = entry
        self.timeout = timeout

    @property
    def packed(self) -> bytes:
        """fuse_attr alone."""
        return self.entry[abi.ENTRY_OUT.size :]


_SEC, _NSEC = RW_TIMEOUT
# node id 0: the kernel caches "no such name" for that long
NEGATIVE = Attributes(0, 0, abi.ENTRY_OUT.pack(0, 0, _SEC, _SEC, _NSEC, _NSEC) + bytes(abi.ATTR.size), RW_TIMEOUT)


class OpenInode:
    """A kernel inode with open files: which branch file they reach, and how.

    The kernel takes one backing file per inode, for all its opens at once (and reopens
    it with each caller's flags). A read-only branch's file is reached through a no-atime,
    read-only view; a writable branch's file directly."""

    __slots__ = ("backing", "key", "opens")

    def __init__(self, key: tuple[int, int], backing: int) -> None:
        self.key = key  # (st_dev, st_ino) of the branch file
        self.backing = backing  # backing id, 0 when the data is served here
        self.opens = 0


class UnionOperations:
    def __init__(self, union: Union) -> None:
        self.u = union
        self.passthrough: Passthrough | None = None  # the session sets it when INIT enables passthrough
        self._passthrough_refused = False
        self._rw_fds: set[int] = set()  # descriptors opened in the writable branch
        self._open_inodes: dict[int, OpenInode] = {}  # node id -> what its open files reach
        self._handles: dict[int, int] = {}  # open handle -> node id
        self._node_ids: dict[int, int] = {}  # inode -> the node id the kernel gets for it, when not the inode
        self._views: dict[int, int] = {}  # read-only branch -> its no-atime view (mountutil.detached_view)
        self._dirs: dict[int, tuple[Node, list[bytes]]] = {}
        self._dir_handles = itertools.count(1)
        self._lazy: dict[int, tuple[LazyLayer, str]] = {}  # handle of a file still arriving -> its layer, name
        self.lazy_activity = Activity()  # readers waiting on lazy files hold the background fetch back

    def branch_root(self) -> str:
        return os.fsdecode(self.u.rw)

    def node_id(self, ino: int) -> int:
        return self._node_ids.get(ino, ino)

    # -- attributes --------------------------------------------------------------------

    def _attr(self, node: Node) -> Attributes:
        read_only = node.entry.branch > 0 and not node.unlinked
        if read_only and node.attr is not None:
            return node.attr  # type: ignore[return-value]
        st = node.st if node.unlinked else self.u.stat(node)
        assert st is not None
        dirs = node.entry.dirs
        # a merged directory's link count cannot be known cheaply; 1 means "unknown" to find(1)
        nlink = 1 if dirs is not None and len(dirs) > 1 else (0 if node.unlinked else st.st_nlink)
        timeout = RO_TIMEOUT if node.entry.branch else RW_TIMEOUT
        sec, nsec = timeout
        entry = abi.ENTRY_OUT_WITH_ATTR.pack(
            self.node_id(node.ino),
            0,
            sec,
            sec,
            nsec,
            nsec,
            node.ino,
            st.st_size,
            st.st_blocks,
            (st.st_atime_ns // 10**9) & _U64,  # times before 1970 travel as two's complement
            (st.st_mtime_ns // 10**9) & _U64,
            (st.st_ctime_ns // 10**9) & _U64,
            st.st_atime_ns % 10**9,
            st.st_mtime_ns % 10**9,
            st.st_ctime_ns % 10**9,
            st.st_mode,
            nlink,
            st.st_uid,
            st.st_gid,
            st.st_rdev & 0xFFFFFFFF,
            BLKSIZE,
            0,
        )
        a = Attributes(node.ino, st.st_mode, entry, timeout)
        if read_only:
            node.attr = a
        return a

    def lookup(self, parent_inode: int, name: bytes) -> Attributes:
        node = self.u.lookup(self.u.get(parent_inode), name)
        return NEGATIVE if node is None else self._attr(node)

    def getattr(self, inode: int) -> Attributes:
        return self._attr(self.u.get(inode))

    def setattr(
        self,
        inode: int,
        *,
        fh: int | None,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        size: int | None,
        atime_ns: int | None,
        mtime_ns: int | None,
    ) -> Attributes:
        node = self.u.get(inode)
        self.u.copy_up(node)
        # an open writable-branch descriptor also reaches files already unlinked
        target: int | bytes = fh if fh is not None and fh in self._rw_fds else self.u.real(node)
        is_link = stat.S_ISLNK(self.u.stat(node).st_mode) if not node.unlinked else False
        if uid is not None or gid is not None:
            if isinstance(target, int):
                os.fchown(target, -1 if uid is None else uid, -1 if gid is None else gid)
            else:
                os.lchown(target, -1 if uid is None else uid, -1 if gid is None else gid)
        if mode is not None and not is_link:
            os.chmod(target, stat.S_IMODE(mode))
        if size is not None:
            os.truncate(target, size)
        if atime_ns is not None or mtime_ns is not None:
            current = os.fstat(target) if isinstance(target, int) else os.lstat(target)
            times = (
                current.st_atime_ns if atime_ns is None else atime_ns,
                current.st_mtime_ns if mtime_ns is None else mtime_ns,
            )
            if isinstance(target, int):
                os.utime(target, ns=times)
            else:
                os.utime(target, ns=times, follow_symlinks=False)
        node.st = None
        if node.unlinked and isinstance(target, int):
            node.st = os.fstat(target)
        return self._attr(node)

    def readlink(self, inode: int) -> bytes:
        return os.readlink(self.u.real(self.u.get(inode)))

    def statfs(self) -> bytes:
        sv = os.statvfs(self.u.rw)
        return abi.STATFS_OUT.pack(
            sv.f_blocks,
            sv.f_bfree,
            sv.f_bavail,
            sv.f_files,
            sv.f_ffree,
            sv.f_bsize,
            sv.f_namemax - len(whiteouts.PREFIX_B),  # room for the whiteout prefix
            sv.f_frsize,
            0,
        )

    # -- directories -------------------------------------------------------------------

    def opendir(self, inode: int) -> int:
        node = self.u.get(inode)
        handle = next(self._dir_handles)
        self._dirs[handle] = (node, [b".", b"..", *self.u.listing(node)])
        return handle

    def readdir(self, fh: int, start: int) -> Iterator[tuple[int, bytes, Attributes, int]]:
        """(index, name, attributes, mode) from entry `start` of the listing taken at opendir,
        "." and ".." first, as a kernel filesystem lists them (FUSE does not add them)."""
        node, names = self._dirs[fh]
        for i in range(start, len(names)):
            if i < 2:
                child: Node | None = node if i == 0 else (node.parent or node)
            else:
                child = self.u.lookup(node, names[i])
            if child is not None:  # else removed since opendir
                a = self._attr(child)
                yield i, names[i], a, a.mode

    def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    def mkdir(self, parent_inode: int, name: bytes, mode: int, uid: int, gid: int) -> Attributes:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        os.mkdir(path, stat.S_IMODE(mode))
        try:
            self._own(path, parent, uid, gid, mode, is_dir=True)
        except BaseException:
            os.rmdir(path)
            raise
        return self._attr(self.u.added(parent, name, is_dir=True, whited_out=whited_out))

    def rmdir(self, parent_inode: int, name: bytes) -> None:
        self.u.remove(self.u.get(parent_inode), name, want_dir=True)

    # -- names -------------------------------------------------------------------------

    def _own(self, path: bytes, parent: Node, uid: int, gid: int, mode: int, *, is_dir: bool) -> None:
        """Give a new object the caller's owner (the group of a setgid parent) and exact mode."""
        parent_mode = self.u.stat(parent).st_mode
        setgid_parent = bool(parent_mode & stat.S_ISGID)
        os.chown(path, uid, -1 if setgid_parent else gid, follow_symlinks=False)
        if stat.S_ISLNK(mode):
            return
        wanted = stat.S_IMODE(mode) | (stat.S_ISGID if is_dir and setgid_parent else 0)
        if wanted & 0o7000:
            os.chmod(path, wanted)  # chown cleared setuid/setgid; mkdir ignores them

    def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Attributes:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        os.mknod(path, mode, rdev)
        try:
            self._own(path, parent, uid, gid, mode, is_dir=False)
        except BaseException:
            os.unlink(path)
            raise
        return self._attr(self.u.added(parent, name, is_dir=False, whited_out=whited_out))

    def symlink(self, parent_inode: int, name: bytes, target: bytes, uid: int, gid: int) -> Attributes:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        os.symlink(target, path)
        try:
            self._own(path, parent, uid, gid, stat.S_IFLNK | 0o777, is_dir=False)
        except BaseException:
            os.unlink(path)
            raise
        return self._attr(self.u.added(parent, name, is_dir=False, whited_out=whited_out))

    def link(self, inode: int, new_parent_inode: int, new_name: bytes) -> Attributes:
        node = self.u.link(self.u.get(inode), self.u.get(new_parent_inode), new_name)
        node.st = None
        return self._attr(node)

    def unlink(self, parent_inode: int, name: bytes) -> None:
        self.u.remove(self.u.get(parent_inode), name, want_dir=False)

    def rename(self, old_parent: int, old_name: bytes, new_parent: int, new_name: bytes, flags: int) -> None:
        if flags & abi.RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "RENAME_EXCHANGE is not supported by aufs")
        self.u.rename(
            self.u.get(old_parent),
            old_name,
            self.u.get(new_parent),
            new_name,
            noreplace=bool(flags & abi.RENAME_NOREPLACE),
        )

    # -- files -------------------------------------------------------------------------

    def open(self, node_id: int, flags: int) -> tuple[int, int, int]:
        """(handle, open flags, backing id) for the kernel's fuse_open_out."""
        node = self.u.get(node_id)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            self.u.copy_up(node)
        flags &= ~_OPEN_STRIP
        if node.entry.branch:
            flags |= os.O_NOATIME  # reading through a union must not touch a read-only layer
        layer = self.u.lazy_layer(node)
        name = os.fsdecode(node.path)
        arriving = layer is not None and self._arriving(layer, name)
        fd = os.open(self.u.real(node), flags)
        try:
            if not node.entry.branch:
                node.st = None
            opened = (fd, *self._opened(node_id, node, fd, serve=arriving))
            if arriving:
                assert layer is not None
                self._lazy[fd] = (layer, name)
            return opened
        except BaseException:
            os.close(fd)
            raise

    def _arriving(self, layer: LazyLayer, name: str) -> bool:
        """A file of a lazy layer whose data is not all here: served by this process,
        which fetches what a read needs first, never passed through. EIO in a bad layer."""
        layer.check(name)
        if not layer.needs_fetch(name):
            return False
        self.lazy_activity.touch()
        return True

    def read(self, fh: int, size: int, offset: int) -> bytes:
        """File data served by this process (no passthrough): a file still arriving gets
        the chunks this read needs fetched and verified first (EIO if that fails)."""
        lazy = self._lazy.get(fh)
        if lazy is not None:
            layer, name = lazy
            self.lazy_activity.touch()
            layer.ensure(name, offset, size)
        return os.pread(fh, size, offset)

    def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, uid: int, gid: int
    ) -> tuple[Attributes, tuple[int, int, int]]:
        parent = self.u.get(parent_inode)
        path, whited_out = self.u.prepare_new(parent, name)
        fd = os.open(path, (flags & ~_OPEN_STRIP) | os.O_CREAT | os.O_EXCL, stat.S_IMODE(mode))
        try:
            self._own(path, parent, uid, gid, mode, is_dir=False)
            node = self.u.added(parent, name, is_dir=False, whited_out=whited_out)
            return self._attr(node), (fd, *self._opened(node.ino, node, fd))
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise

    def _opened(self, node_id: int, node: Node, fd: int, *, serve: bool = False) -> tuple[int, int]:
        """Register open `fd` of kernel inode `node_id`: (open flags, backing id); with
        `serve`, its data is served by this process even where passthrough is on."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        inode = self._open_inodes.get(node_id)
        if inode is not None and inode.key != key:
            # Copied up while open: this kernel inode's files stay on the lower file (as
            # in aufs), and its backing or page cache with them. The copy gets an inode
            # of its own, under a new node id; ESTALE makes the kernel look the name up
            # again and open that one.
            if self.node_id(node.ino) == node_id:
                self._node_ids[node.ino] = self.u.new_id(node)
                node.attr = None  # it names the old node id
            raise OSError(errno.ESTALE, "copied up while open; look the name up again")
        if inode is None:
            backing = self._new_backing(node) if self.passthrough and not self._passthrough_refused and not serve else 0
            inode = self._open_inodes[node_id] = OpenInode(key, backing)
        inode.opens += 1
        self._handles[fd] = node_id
        if not node.entry.branch:
            self._rw_fds.add(fd)
        if inode.backing:
            return abi.FOPEN_PASSTHROUGH, inode.backing
        return (abi.FOPEN_KEEP_CACHE if node.entry.branch else 0), 0  # a read-only branch cannot change

    def _new_backing(self, node: Node) -> int:
        """A backing id for `node`'s branch file, 0 if the kernel will not take one."""
        assert self.passthrough is not None
        branch = node.entry.branch
        try:
            if branch:
                # The kernel reopens the backing file with the caller's flags, so O_NOATIME
                # would be lost: the file comes through a no-atime, read-only view instead.
                fd = os.open(node.path.lstrip(b"/"), os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._view(branch))
            else:
                fd = os.open(self.u.real(node), os.O_RDONLY | os.O_CLOEXEC)
            try:
                return self.passthrough.open(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            # The same holds for every file of these branches (stack depth, no read_iter,
            # no mount API): stop asking, serve file data here.
            print(f"strata-aufs: no passthrough ({exc}); serving file data itself", file=sys.stderr)
            self._passthrough_refused = True
            return 0

    def _view(self, branch: int) -> int:
        fd = self._views.get(branch)
        if fd is None:
            fd = self._views[branch] = mountutil.detached_view(
                self.u.roots[branch], mountutil.MOUNT_ATTR_RDONLY | mountutil.MOUNT_ATTR_NOATIME
            )
        return fd

    def fallocate(self, node_id: int, fh: int, mode: int, offset: int, length: int) -> None:
        if _libc.fallocate(fh, mode, offset, length) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.u.get(node_id).st = None

    def release(self, fh: int) -> None:
        self._rw_fds.discard(fh)
        self._lazy.pop(fh, None)
        os.close(fh)
        inode_id = self._handles.pop(fh)
        inode = self._open_inodes[inode_id]
        inode.opens -= 1
        if inode.opens == 0:
            del self._open_inodes[inode_id]
            if inode.backing:
                assert self.passthrough is not None
                self.passthrough.close(inode.backing)

    # -- extended attributes -----------------------------------------------------------

    def getxattr(self, inode: int, name: bytes) -> bytes:
        return os.getxattr(self.u.real(self.u.get(inode)), name, follow_symlinks=False)  # ENODATA is ENOATTR

    def listxattr(self, inode: int) -> list[bytes]:
        return [os.fsencode(n) for n in os.listxattr(self.u.real(self.u.get(inode)), follow_symlinks=False)]

    def setxattr(self, inode: int, name: bytes, value: bytes, flags: int) -> None:
        node = self.u.get(inode)
        self.u.copy_up(node)
        os.setxattr(self.u.real(node), name, value, flags, follow_symlinks=False)
        node.st = None

    def removexattr(self, inode: int, name: bytes) -> None:
        node = self.u.get(inode)
        self.u.copy_up(node)
        os.removexattr(self.u.real(node), name, follow_symlinks=False)
        node.st = None

"""The FUSE kernel protocol (include/uapi/linux/fuse.h), as much of it as the union serves.

Spoken directly rather than through libfuse because FUSE passthrough (protocol 7.40,
Linux 6.9) needs three things libfuse 3.14 -- the one Debian 12 and pyfuse3 build on --
cannot say: the FUSE_PASSTHROUGH init flag with a stack depth, the BACKING_OPEN ioctl on
the device, and a backing id in the open reply. Passthrough is what lets the kernel read
a branch file without copying every byte through this process.
"""

from __future__ import annotations

import fcntl
import struct

KERNEL_VERSION = 7
MINOR_VERSION = 40  # the first minor with passthrough; the kernel speaks ours if it is newer
MIN_MINOR = 23  # Linux 4.0: RENAME2, and every struct layout below

ROOT_ID = 1

# opcodes
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE, STATFS, RELEASE = 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
FSYNC, SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR, FLUSH, INIT = 20, 21, 22, 23, 24, 25, 26
OPENDIR, READDIR, RELEASEDIR, FSYNCDIR, ACCESS, CREATE, INTERRUPT = 27, 28, 29, 30, 34, 35, 36
DESTROY, BATCH_FORGET, FALLOCATE, READDIRPLUS, RENAME2, LSEEK = 38, 42, 43, 44, 45, 46
NO_REPLY = frozenset({FORGET, BATCH_FORGET, INTERRUPT})

# init flags (flags2 is the upper 32 bits)
ASYNC_READ = 1 << 0
ATOMIC_O_TRUNC = 1 << 3
BIG_WRITES = 1 << 5
AUTO_INVAL_DATA = 1 << 12
DO_READDIRPLUS = 1 << 13
READDIRPLUS_AUTO = 1 << 14
ASYNC_DIO = 1 << 15
PARALLEL_DIROPS = 1 << 18
MAX_PAGES = 1 << 22
CACHE_SYMLINKS = 1 << 23
INIT_EXT = 1 << 30
PASSTHROUGH = 1 << 37
WANTED = (
    ASYNC_READ
    | ATOMIC_O_TRUNC  # O_TRUNC arrives with the open, so the copy-up can skip the data
    | BIG_WRITES
    | AUTO_INVAL_DATA
    | DO_READDIRPLUS  # a listing brings its entries' attributes: find(1) costs no lookups
    | READDIRPLUS_AUTO
    | ASYNC_DIO
    | PARALLEL_DIROPS
    | MAX_PAGES
    | CACHE_SYMLINKS
)

# open reply flags
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_CACHE_DIR = 1 << 3
FOPEN_PASSTHROUGH = 1 << 7

# setattr valid bits
FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE = 1, 2, 4, 8
FATTR_ATIME, FATTR_MTIME, FATTR_FH, FATTR_ATIME_NOW, FATTR_MTIME_NOW = 16, 32, 64, 128, 256

FSYNC_FDATASYNC = 1
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2

# /dev/fuse ioctls: _IOW(229, 1, struct fuse_backing_map) and _IOW(229, 2, uint32_t)
DEV_IOC_BACKING_OPEN = 0x4010E501
DEV_IOC_BACKING_CLOSE = 0x4004E502
BACKING_MAP = struct.Struct("<iIQ")  # fd, flags, padding
BACKING_ID = struct.Struct("<I")

MAX_WRITE = 1 << 20
MAX_PAGES_COUNT = MAX_WRITE // 4096
BUFFER_SIZE = MAX_WRITE + 4096  # a whole WRITE request with its headers

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid total_extlen padding
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
INIT_IN = struct.Struct("<IIII")  # major minor max_readahead flags (flags2 follows with INIT_EXT)
INIT_OUT = struct.Struct("<IIIIHHIIHHII24x")  # ... flags2 max_stack_depth unused[6]
# ino size blocks atime mtime ctime atimensec mtimensec ctimensec mode nlink uid gid rdev blksize flags
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("<QQQQII")  # nodeid generation entry_valid attr_valid *_nsec, then ATTR
ENTRY_OUT_WITH_ATTR = struct.Struct("<QQQQII" + ATTR.format[1:])  # both in one pack
ATTR_OUT = struct.Struct("<QII")  # attr_valid attr_valid_nsec dummy, then ATTR
GETATTR_IN = struct.Struct("<IIQ")  # getattr_flags dummy fh
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
MKNOD_IN = struct.Struct("<IIII")  # mode rdev umask padding
MKDIR_IN = struct.Struct("<II")  # mode umask
RENAME_IN = struct.Struct("<Q")  # newdir
RENAME2_IN = struct.Struct("<QII")  # newdir flags padding
LINK_IN = struct.Struct("<Q")  # oldnodeid
OPEN_IN = struct.Struct("<II")  # flags open_flags
CREATE_IN = struct.Struct("<IIII")  # flags mode umask open_flags
OPEN_OUT = struct.Struct("<QIi")  # fh open_flags backing_id
RELEASE_IN = struct.Struct("<QIIQ")  # fh flags release_flags lock_owner
READ_IN = struct.Struct("<QQIIQII")  # fh offset size read_flags lock_owner flags padding
WRITE_IN = READ_IN  # fh offset size write_flags lock_owner flags padding
WRITE_OUT = struct.Struct("<II")
FSYNC_IN = struct.Struct("<QII")  # fh fsync_flags padding
FALLOCATE_IN = struct.Struct("<QQQII")  # fh offset length mode padding
LSEEK_IN = struct.Struct("<QQII")  # fh offset whence padding
LSEEK_OUT = struct.Struct("<Q")
SETXATTR_IN = struct.Struct("<II")  # size flags
GETXATTR_IN = struct.Struct("<II")  # size padding
GETXATTR_OUT = struct.Struct("<II")
STATFS_OUT = struct.Struct("<QQQQQIIII24x")  # blocks bfree bavail files ffree bsize namelen frsize padding spare[6]
DIRENT = struct.Struct("<QQII")  # ino off namelen type, then the name padded to 8 bytes
FORGET_ONE = struct.Struct("<QQ")


def split_time(seconds: float) -> tuple[int, int]:
    whole = int(seconds)
    return whole, int((seconds - whole) * 1e9)


def dirent(ino: int, offset: int, name: bytes, mode: int) -> bytes:
    """One fuse_dirent: the header, the name, zeros up to the next 8-byte boundary."""
    return DIRENT.pack(ino, offset, len(name), (mode & 0o170000) >> 12) + name + bytes(-len(name) % 8)


class Passthrough:
    """The device's backing-file registry: a backing id lets the kernel serve a file's
    reads, writes and mmap straight from the branch file, as overlayfs does."""

    def __init__(self, dev_fd: int) -> None:
        self.dev_fd = dev_fd

    def open(self, fd: int) -> int:
        return fcntl.ioctl(self.dev_fd, DEV_IOC_BACKING_OPEN, bytearray(BACKING_MAP.pack(fd, 0, 0)), True)

    def close(self, backing_id: int) -> None:
        fcntl.ioctl(self.dev_fd, DEV_IOC_BACKING_CLOSE, bytearray(BACKING_ID.pack(backing_id)), True)

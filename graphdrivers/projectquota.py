"""Per-directory size limits with filesystem project quotas (xfs, or ext4 with prjquota).

Directory-based drivers (vfs, overlay2) have no device whose size could bound a layer, so
they do what Docker does: give each limited layer directory its own project id with the
inherit flag (every file created below is charged to it) and set a hard block limit on
that project. The kernel then refuses writes past the limit with EDQUOT.

The quotactl(2) calls need a block device node for the filesystem; like Docker, we make
our own (`backingFsBlockDev` in the driver's home) so this works whatever the mount
source is called.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct
import threading

from .fsmagic import fs_name

FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_PROJINHERIT = 0x00000200
_FSXATTR = struct.Struct("=IIII I8x")  # xflags, extsize, nextents, projid, cowextsize, pad

_Q_XSETQLIM = (ord("X") << 8) + 4
_PRJQUOTA = 2
_FS_DQUOT_VERSION = 1
_FS_PROJ_QUOTA = 2
_FS_DQ_BSOFT = 1 << 2
_FS_DQ_BHARD = 1 << 3
_BASIC_BLOCK = 512
# struct fs_disk_quota: version, flags, fieldmask, id, blk hard, blk soft, then the rest.
_DISK_QUOTA = struct.Struct("=bbHIQQ")
_DISK_QUOTA_SIZE = 112

_libc = ctypes.CDLL(None, use_errno=True)
_libc.quotactl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]


def _qcmd(cmd: int, kind: int) -> int:
    return (cmd << 8) | (kind & 0xFF)


def get_project(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(_FSXATTR.size))
    finally:
        os.close(fd)
    return _FSXATTR.unpack(buf)[3]


def set_project(path: str, project: int) -> None:
    """Give a directory a project id that everything created below it inherits."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        current = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(_FSXATTR.size))
        xflags, extsize, nextents, _, cow = _FSXATTR.unpack(current)
        wanted = _FSXATTR.pack(xflags | FS_XFLAG_PROJINHERIT, extsize, nextents, project, cow)
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, wanted)
    finally:
        os.close(fd)


class ProjectQuota:
    """Project quotas on the filesystem holding `home`; `unsupported` says why not, or None."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.fstype = fs_name(home)
        self.device = os.path.join(home, "backingFsBlockDev")
        self.unsupported: str | None = None
        self._next = 0
        self._lock = threading.Lock()  # layers are created from several threads at once
        try:
            self._probe()
        except OSError as exc:
            self.unsupported = self._reason(exc)
            if os.path.lexists(self.device):
                os.unlink(self.device)

    def _reason(self, exc: OSError) -> str:
        if self.fstype not in ("xfs", "ext4"):
            return f"the backing filesystem is {self.fstype}, which has no project quotas (xfs or ext4 needed)"
        if exc.errno in (errno.ESRCH, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.ENOTTY):
            return (
                f"project quotas are off on the backing {self.fstype} filesystem (it must be mounted with "
                f"prjquota, on a kernel built with {self.fstype} quota support)"
            )
        return f"project quotas on the backing {self.fstype} filesystem failed: {os.strerror(exc.errno or 0)}"

    def _probe(self) -> None:
        if self.fstype not in ("xfs", "ext4"):
            raise OSError(errno.ENOTSUP, "no project quotas")
        st = os.stat(self.home)
        if os.path.lexists(self.device):
            os.unlink(self.device)  # the filesystem may be on another device than last time
        os.mknod(self.device, stat.S_IFBLK | 0o600, st.st_dev)
        base = get_project(self.home)
        self._set_limit(base, 0)  # fails unless project quota accounting and enforcement are on
        self._next = base + 1

    def _set_limit(self, project: int, size: int) -> None:
        buf = ctypes.create_string_buffer(_DISK_QUOTA_SIZE)
        blocks = (size + _BASIC_BLOCK - 1) // _BASIC_BLOCK
        _DISK_QUOTA.pack_into(
            buf, 0, _FS_DQUOT_VERSION, _FS_PROJ_QUOTA, _FS_DQ_BSOFT | _FS_DQ_BHARD, project, blocks, blocks
        )
        if _libc.quotactl(_qcmd(_Q_XSETQLIM, _PRJQUOTA), os.fsencode(self.device), project, buf) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{os.strerror(err)}: setting the project {project} quota on {self.device}")

    def note_used(self, path: str) -> None:
        """Record an existing directory's project id, so new layers never share it."""
        with self._lock:
            self._next = max(self._next, get_project(path) + 1)

    def limit(self, path: str, size: int) -> int:
        """Give the empty directory `path` a new project limited to `size` bytes; its id."""
        with self._lock:
            project = self._next
            self._next += 1
        self._set_limit(project, size)
        set_project(path, project)
        return project

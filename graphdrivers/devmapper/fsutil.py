"""Filesystem operations on a thin device: mkfs, UUID, grow, freeze, syncfs.

mkfs and grow run the distribution's tools (they happen once per base device or per
resized layer, never on the create/get/put hot path). Reading the UUID, freezing and
syncing are direct reads and ioctls because they do run on hot or start-up paths.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence

from .. import mountutil
from ..errors import DriverError

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878

SUPPORTED_FS = ("xfs", "ext4")
XFS_MIN_SIZE = 300 << 20  # mkfs.xfs (xfsprogs >= 5.19) refuses anything smaller

_libc = ctypes.CDLL(None, use_errno=True)


class FilesystemError(DriverError):
    """A thin device's filesystem could not be made, read or resized."""


def default_fs() -> str:
    """Docker's rule: xfs when mkfs.xfs is installed, else ext4."""
    return "xfs" if shutil.which("mkfs.xfs") else "ext4"


def _run(argv: Sequence[str]) -> None:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FilesystemError(f"{argv[0]} is not installed") from None
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise FilesystemError(f"{' '.join(argv)} failed ({proc.returncode}): {detail}")


def mkfs(fstype: str, device: str, extra_args: Sequence[str] = ()) -> None:
    """Format `device` (a block device or an image file).

    ext4 is made with lazy inode tables; mounts then pass `noinit_itable` (see
    `mount_options`), otherwise ext4's background zeroing would rewrite every snapshot's
    inode tables and unshare their blocks in the pool.
    """
    if fstype == "xfs":
        _run(["mkfs.xfs", "-q", "-f", "-K", *extra_args, device])
    elif fstype == "ext4":
        _run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", *extra_args, device])
    else:
        raise FilesystemError(f"dm.fs {fstype!r} is not supported (use one of {', '.join(SUPPORTED_FS)})")


# mount(8)'s generic options are mount(2) flags, not filesystem data (a filesystem refuses
# them in data with EINVAL); their opposites are the default and are dropped.
MOUNT_FLAGS = {
    "ro": mountutil.MS_RDONLY,
    "nosuid": mountutil.MS_NOSUID,
    "nodev": mountutil.MS_NODEV,
    "noexec": mountutil.MS_NOEXEC,
    "sync": 0x10,  # MS_SYNCHRONOUS
    "dirsync": 0x80,  # MS_DIRSYNC
    "noatime": mountutil.MS_NOATIME,
    "nodiratime": 0x800,  # MS_NODIRATIME
    "relatime": 1 << 21,  # MS_RELATIME
    "strictatime": 1 << 24,  # MS_STRICTATIME
}
DEFAULT_OPTIONS = {"rw", "suid", "dev", "exec", "async", "atime", "diratime", "defaults"}


def mount_options(fstype: str, user_options: str) -> tuple[int, str]:
    """(mount flags, filesystem data) for a thin device: the user's options split as
    mount(8) does, plus `nouuid` for xfs (every snapshot shares the base's UUID, and xfs
    refuses a second mount of a UUID) and `noinit_itable` for ext4."""
    flags, data = 0, []
    for opt in (o.strip() for o in user_options.split(",")):
        if opt in MOUNT_FLAGS:
            flags |= MOUNT_FLAGS[opt]
        elif opt and opt not in DEFAULT_OPTIONS:
            data.append(opt)
    needed = {"xfs": "nouuid", "ext4": "noinit_itable"}.get(fstype)
    if needed and needed not in data:
        data.append(needed)
    return flags, ",".join(data)


def read_uuid(device: str) -> tuple[str, str]:
    """(filesystem type, UUID) read from the superblock of `device`."""
    with open(device, "rb") as f:
        head = f.read(2048)
    if head[0:4] == b"XFSB":
        return "xfs", str(uuid.UUID(bytes=head[32:48]))
    if len(head) >= 1024 + 120 and head[1024 + 56 : 1024 + 58] == b"\x53\xef":
        return "ext4", str(uuid.UUID(bytes=head[1024 + 104 : 1024 + 120]))
    raise FilesystemError(f"{device} holds no xfs or ext4 filesystem")


def grow_mounted(mountpoint: str) -> None:
    """Grow the xfs mounted at `mountpoint` to its device's size (xfs grows only online)."""
    _run(["xfs_growfs", "-d", mountpoint])


def grow_unmounted(device: str) -> None:
    """Grow the unmounted ext4 on `device` to the device's size.

    Offline, because online resize refuses small filesystems made without room for the
    group descriptors to grow; `-f` because the snapshot's superblock may carry the
    origin's "mounted" state when the origin was frozen rather than unmounted.
    """
    _run(["resize2fs", "-f", device])


def syncfs(path: str) -> None:
    """Flush the filesystem holding `path` (only that one, unlike sync(2))."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Frozen:
    """`with Frozen(mountpoint):` FIFREEZE ... FITHAW.

    Freezing flushes every dirty block and the journal to the device and blocks new
    writes, so the device's bytes are a clean, consistent filesystem while frozen: the
    equivalent of dm-thin suspending an active origin before `create_snap`.
    """

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self._fd: int | None = None

    def __enter__(self) -> Frozen:
        fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, FIFREEZE, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        try:
            fcntl.ioctl(self._fd, FITHAW, 0)
        finally:
            os.close(self._fd)
            self._fd = None

"""The `reflink` thin-pool backend: thin devices as sparse files that share extents.

A device is a sparse file `pool/<device_id>` of the device's size; a snapshot is a
FICLONE of its origin, so the kernel shares every extent and copies a block only when
either side writes it (block-level copy-on-write, at the pool filesystem's block size).
Activation attaches the file to a loop device with autoclear, so unmounting the device
also deactivates it.

The pool directory is on the driver root's own filesystem when that filesystem can
FICLONE; otherwise the driver makes a sparse xfs image (reflink=1) of `dm.loopdatasize`
at `devmapper/data` and loop-mounts it at `pool/` -- the analogue of Docker's loop-lvm.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
from dataclasses import dataclass

from .. import loopdev, mountutil
from ..backing import MKFS
from ..errors import ThinPoolError
from . import fsutil
from .pool import ActiveDevice, PoolUsage, ThinPool

FICLONE = 0x40049409


def clone(source: str, target: str) -> None:
    """`target` becomes a reflink copy of `source` (must not exist yet)."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.ioctl(dst, FICLONE, src)
        except BaseException:
            os.close(dst)
            os.unlink(target)
            raise
        os.close(dst)
    finally:
        os.close(src)


def can_reflink(directory: str) -> bool:
    """Whether the filesystem holding `directory` can FICLONE (tried, not guessed)."""
    probe = os.path.join(directory, ".reflink-probe")
    copy = probe + ".clone"
    for path in (probe, copy):
        if os.path.exists(path):
            os.unlink(path)
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
        clone(probe, copy)
        return True
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM):
            return False
        raise
    finally:
        for path in (probe, copy):
            if os.path.exists(path):
                os.unlink(path)


@dataclass
class _Shared:
    """A loop device already attached to a device file (see ReflinkPool.activate)."""

    path: str
    shared: bool = True

    def release(self) -> None:
        """Not ours to release: its other user keeps it attached."""


class ReflinkPool(ThinPool):
    backend = "reflink"

    def __init__(self, home: str, *, name: str, data_size: int, metadata_dir: str, metadata_size: int) -> None:
        self.name = name
        self.dir = os.path.join(home, "pool")
        self.image = os.path.join(home, "devmapper", "data")
        self.metadata_file = metadata_dir
        self._metadata_size = metadata_size
        self._own_mount = False
        self.library_version = f"reflink (FICLONE + loop devices, Linux {platform.release()})"
        os.makedirs(self.dir, exist_ok=True)
        if mountutil.is_mountpoint(self.dir):
            self._own_mount = True  # left mounted by a previous instance that did not clean up
        elif os.path.exists(self.image):
            self._mount_image()
        elif not can_reflink(self.dir):
            self._make_image(data_size)
        self.data_file = self.image if self._own_mount else self.dir
        if self._own_mount and not can_reflink(self.dir):
            raise ThinPoolError(f"the pool at {self.dir} cannot share extents (FICLONE failed)")

    # -- pool image (only when the root's filesystem cannot reflink) --------------------

    def _make_image(self, size: int) -> None:
        os.makedirs(os.path.dirname(self.image), exist_ok=True)
        with open(self.image, "xb") as f:
            f.truncate(size)
        try:
            fsutil._run([*MKFS["xfs"], self.image])
            self._mount_image()
        except BaseException:
            os.unlink(self.image)
            raise

    def _mount_image(self) -> None:
        with loopdev.attach(self.image) as loop:
            mountutil.mount(loop.path, self.dir, "xfs", 0, None)
        self._own_mount = True

    @property
    def closes_devices(self) -> bool:
        return self._own_mount

    def close(self) -> None:
        if self._own_mount:
            mountutil.umount_retry(self.dir)
            self._own_mount = False

    # -- devices ------------------------------------------------------------------------

    def path(self, device_id: int) -> str:
        return os.path.join(self.dir, str(device_id))

    def create_thin(self, device_id: int, size: int) -> None:
        with open(self.path(device_id), "xb") as f:
            f.truncate(size)

    def create_snap(self, device_id: int, origin_id: int, origin_mountpoint: str | None) -> None:
        if origin_mountpoint is None:
            clone(self.path(origin_id), self.path(device_id))
            return
        with fsutil.Frozen(origin_mountpoint):
            clone(self.path(origin_id), self.path(device_id))

    def delete(self, device_id: int) -> None:
        try:
            os.unlink(self.path(device_id))
        except FileNotFoundError:
            pass

    def device_ids(self) -> set[int]:
        return {int(name) for name in os.listdir(self.dir) if name.isdigit()}

    def busy(self, device_id: int) -> str | None:
        devices = loopdev.devices_for(self.path(device_id))
        return f"its device is still attached to {', '.join(devices)}" if devices else None

    def activate(self, device_id: int, size: int) -> ActiveDevice:
        """A loop device for the device file: a new one, or the one still attached to it.

        A loop device outlives our umount while a copy of the mount lives on in another
        mount namespace (a container started meanwhile copies every mount). Its
        filesystem is still live there; mounting the same block device again shares that
        superblock, where attaching a second loop device would run two filesystems on one
        file and the old one's eventual unmount would overwrite the new one's log.
        """
        attached = loopdev.devices_for(self.path(device_id))
        if attached:
            return _Shared(attached[0])
        return loopdev.attach(self.path(device_id))

    def deactivate(self, device_id: int) -> None:
        """Nothing to do: the loop device was attached with autoclear and detaches itself
        when its mount goes (later, if the unmount was lazy)."""

    def resize(self, device_id: int, size: int, active_path: str | None) -> None:
        os.truncate(self.path(device_id), size)
        if active_path is not None:
            loopdev.set_capacity(active_path)

    def settle(self) -> None:
        """xfs frees an unlinked file's blocks in the background; syncfs waits for that."""
        fsutil.syncfs(self.dir)

    def free_space(self) -> list[tuple[str, int, int]]:
        """Only data: the device set's JSON lives on the pool's own filesystem."""
        st = os.statvfs(self.dir)
        return [("data", st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)]

    def usage(self) -> PoolUsage:
        st = os.statvfs(self.dir)
        meta_used = 0
        try:
            with os.scandir(self.metadata_file) as entries:
                meta_used = sum(e.stat().st_blocks * 512 for e in entries if e.is_file())
        except FileNotFoundError:
            pass
        return PoolUsage(
            block_size=st.f_bsize,
            data_used=(st.f_blocks - st.f_bfree) * st.f_frsize,
            data_total=st.f_blocks * st.f_frsize,
            data_available=st.f_bavail * st.f_frsize,
            metadata_used=meta_used,
            metadata_total=self._metadata_size,
            metadata_available=max(self._metadata_size - meta_used, 0),
        )

"""Loop-mounted backing filesystems, so each driver gets the filesystem it needs.

Tests and the bench compare drivers on the same underlying disk by giving each one a
sparse image file of the right kind (btrfs, xfs with reflink, ext4), formatted and
loop-mounted under a directory of the caller's. Teardown works after any error, and the
loop device is attached with autoclear, so unmounting also frees it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from types import TracebackType

from . import loopdev, mountutil
from .errors import DriverError

log = logging.getLogger(__name__)

MKFS: dict[str, list[str]] = {
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"],
}
# The smallest image each mkfs accepts (xfsprogs 6 refuses filesystems under 300 MiB).
MIN_SIZE = {"btrfs": 128 << 20, "xfs": 320 << 20, "ext4": 16 << 20}
DEFAULT_SIZE = 8 << 30


class BackingError(DriverError):
    """A backing filesystem could not be made or torn down."""


def _run(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackingError(f"{argv[0]} is not installed (needed to make a backing filesystem)") from None
    if proc.returncode != 0:
        raise BackingError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")


class LoopFilesystem:
    """A sparse image at `<directory>/<fstype>.img`, mounted at `<directory>/mnt`.

    Use as a context manager, or call `create()` and `destroy()`. `destroy` unmounts
    everything still mounted below the mount point first (a leaked layer mount would
    otherwise keep the loop device busy).
    """

    def __init__(
        self,
        directory: str,
        fstype: str,
        size: int = DEFAULT_SIZE,
        *,
        mountpoint: str | None = None,
        mkfs_args: tuple[str, ...] = (),
        mount_options: str = "",
    ) -> None:
        if fstype not in MKFS:
            raise BackingError(f"unsupported backing filesystem {fstype!r} (known: {', '.join(MKFS)})")
        if size < MIN_SIZE[fstype]:
            raise BackingError(f"{fstype} needs an image of at least {MIN_SIZE[fstype] >> 20} MiB, got {size}")
        self.directory = os.path.abspath(directory)
        self.fstype = fstype
        self.size = size
        self.image = os.path.join(self.directory, f"{fstype}.img")
        self.mountpoint = os.path.abspath(mountpoint or os.path.join(self.directory, "mnt"))
        self.mkfs_args = mkfs_args
        self.mount_options = mount_options
        self.device: str | None = None

    def create(self) -> LoopFilesystem:
        os.makedirs(self.directory, exist_ok=True)
        try:
            with open(self.image, "xb") as f:
                f.truncate(self.size)
            _run([*MKFS[self.fstype], *self.mkfs_args, self.image])
            os.makedirs(self.mountpoint, exist_ok=True)
            with loopdev.attach(self.image) as loop:
                self.device = loop.path
                mountutil.mount(loop.path, self.mountpoint, self.fstype, 0, self.mount_options or None)
            log.debug("mounted a %s image %s (%s) at %s", self.fstype, self.image, self.device, self.mountpoint)
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Unmount, detach and delete, whatever state creation reached."""
        log.debug("tearing down the %s image %s", self.fstype, self.image)
        for point in mountutil.mounts_under(self.mountpoint):
            mountutil.umount_retry(point)
        for device in loopdev.devices_for(self.image):
            loopdev.detach(device)
        self.device = None
        if os.path.exists(self.image):
            os.unlink(self.image)
        if os.path.isdir(self.mountpoint):
            shutil.rmtree(self.mountpoint, ignore_errors=True)

    def __enter__(self) -> LoopFilesystem:
        return self.create()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

"""Loop devices through the kernel's ioctls (LOOP_CTL_GET_FREE, LOOP_CONFIGURE).

Attached with autoclear, so the kernel detaches a device by itself once its last user
(normally the mount made on it) goes away: a crashed caller cannot leak loop devices that
are mounted, and `detach` covers the ones that are not.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import stat

log = logging.getLogger(__name__)

LOOP_CLR_FD = 0x4C01
LOOP_SET_CAPACITY = 0x4C07
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82

LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16

LOOP_MAJOR = 7


class _LoopInfo64(ctypes.Structure):
    _fields_ = [
        ("lo_device", ctypes.c_uint64),
        ("lo_inode", ctypes.c_uint64),
        ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64),
        ("lo_sizelimit", ctypes.c_uint64),
        ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32),
        ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32),
        ("lo_file_name", ctypes.c_uint8 * 64),
        ("lo_crypt_name", ctypes.c_uint8 * 64),
        ("lo_encrypt_key", ctypes.c_uint8 * 32),
        ("lo_init", ctypes.c_uint64 * 2),
    ]


class _LoopConfig(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_uint32),
        ("block_size", ctypes.c_uint32),
        ("info", _LoopInfo64),
        ("reserved", ctypes.c_uint64 * 8),
    ]


def _device_node(number: int) -> str:
    path = f"/dev/loop{number}"
    try:
        st = os.stat(path)
        if stat.S_ISBLK(st.st_mode):
            return path
    except FileNotFoundError:
        # Containers often have a static /dev: make the node the kernel just allocated.
        os.mknod(path, 0o660 | stat.S_IFBLK, os.makedev(LOOP_MAJOR, number))
    return path


class LoopDevice:
    """An attached loop device, held open until `release()`.

    With autoclear the kernel detaches the device when its last opener goes away, so the
    caller mounts it (the mount holds it) and then releases this descriptor.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LoopDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def attach(backing_file: str, *, read_only: bool = False, autoclear: bool = True) -> LoopDevice:
    """Attach `backing_file` to a free loop device; release the result once it is in use."""
    flags = os.O_RDONLY if read_only else os.O_RDWR
    file_fd = os.open(backing_file, flags | os.O_CLOEXEC)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(64):
                number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                node = _device_node(number)
                dev_fd = os.open(node, flags | os.O_CLOEXEC)
                handed_over = False
                try:
                    config = _LoopConfig()
                    config.fd = file_fd
                    info_flags = LO_FLAGS_AUTOCLEAR if autoclear else 0
                    if read_only:
                        info_flags |= LO_FLAGS_READ_ONLY
                    config.info.lo_flags = info_flags
                    name = os.fsencode(os.path.abspath(backing_file))[:63]
                    ctypes.memmove(config.info.lo_file_name, name, len(name))
                    try:
                        fcntl.ioctl(dev_fd, LOOP_CONFIGURE, config)
                    except OSError as exc:
                        if exc.errno == errno.EBUSY:  # another process took it first
                            continue
                        raise
                    handed_over = True
                    log.debug("attached %s to %s", backing_file, node)
                    return LoopDevice(node, dev_fd)
                finally:
                    if not handed_over:
                        os.close(dev_fd)
            raise OSError(errno.EBUSY, f"no free loop device for {backing_file} after 64 attempts")
        finally:
            os.close(ctl)
    finally:
        os.close(file_fd)


def backing_file(device: str) -> str | None:
    """The file behind a loop device, or None when it has none (or is detached meanwhile:
    other processes attach and detach loop devices concurrently, and reading the sysfs
    attribute of one going away fails with ENODEV or ENXIO)."""
    name = os.path.basename(device)
    try:
        with open(f"/sys/block/{name}/loop/backing_file", encoding="utf-8") as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            return None
        raise


def devices_for(path: str) -> list[str]:
    """Loop devices whose backing file is `path` (as the kernel reports it)."""
    path = os.path.abspath(path)
    found = []
    try:
        names = os.listdir("/sys/block")
    except FileNotFoundError:
        return found
    for name in names:
        if name.startswith("loop") and backing_file(name) in (path, path + " (deleted)"):
            found.append(f"/dev/{name}")
    return found


def detach(device: str) -> None:
    log.debug("detaching %s", device)
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: already detached
            raise
    finally:
        os.close(fd)


def set_capacity(device: str) -> None:
    """Tell the kernel the backing file grew (a device resized with its file)."""
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_SET_CAPACITY)
    finally:
        os.close(fd)

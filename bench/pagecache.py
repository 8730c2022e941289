"""How much of a file is in the page cache right now (mmap + mincore, as util-linux
`fincore` does), so a read step can record whether its data really was cold or warm.

mincore is asked through a mapping of the file, because a mapping reaches the pages a
read is served from: overlayfs and FUSE passthrough map the lower (backing) file, a
snapshot or a new block device maps its own inode. Asking never faults a page in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
MAP_FAILED = ctypes.c_void_p(-1).value


def cached_bytes(path: str) -> int | None:
    """Bytes of `path` resident in the page cache; None when the file cannot be mapped
    (a FUSE mount that serves reads itself may refuse mmap), with the reason logged."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr == MAP_FAILED:
            log.info("cannot map %s to ask the page cache: %s", path, os.strerror(ctypes.get_errno()))
            return None
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vector = ctypes.create_string_buffer(pages)
            if _libc.mincore(addr, size, vector) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mincore({path}): {os.strerror(err)}")
            resident = sum(b & 1 for b in vector.raw)
        finally:
            _libc.munmap(addr, size)
        return min(resident * mmap.PAGESIZE, size)
    finally:
        os.close(fd)

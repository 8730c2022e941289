"""Which filesystem is full: ENOSPC (or EDQUOT) anywhere becomes an error naming it.

An OSError(28) from deep inside a layer apply says nothing a user can act on; the
filesystem that ran out (its mount point, type and device, and whether blocks or inodes
ran out) is what they need to free space or move the engine root.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from graphdrivers import mountutil

from ..errors import NoSpace

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return os.path.realpath(path)


def mount_of(path: str) -> tuple[str, str, str]:
    """(mount point, filesystem type, source) of the filesystem `path` is on."""
    path = _existing(path)
    best = ("/", "?", "?")
    for point, fstype, source in mountutil.mount_table():  # later entries are mounted over earlier ones
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
            best = (point, fstype, source)
    return best


def _fullness(point: str) -> float:
    st = os.statvfs(point)
    blocks = st.f_bfree / st.f_blocks if st.f_blocks else 1.0
    inodes = st.f_ffree / st.f_files if st.f_files else 1.0
    return min(blocks, inodes)


def no_space(exc: OSError, paths: Iterable[str]) -> NoSpace:
    """The NoSpace error for `exc`: the filesystem of the path it names, else the fullest of `paths`."""
    named = [p for p in (exc.filename, exc.filename2) if isinstance(p, str)]
    mounts = list(dict.fromkeys(mount_of(p) for p in [*named, *paths]))
    point, fstype, source = mounts[0] if named else min(mounts, key=lambda m: _fullness(m[0]))
    st = os.statvfs(point)
    what = "inodes" if st.f_files and st.f_ffree == 0 else "space"
    free = st.f_bavail * st.f_frsize
    kind = "quota exceeded" if exc.errno == errno.EDQUOT else f"no {what} left on device"
    return NoSpace(f"{kind}: the {fstype} filesystem at {point} ({source}) is full ({free} bytes free); "
                   "free space there or use a larger filesystem", point)

"""Copying a lower-branch object into the writable branch, with all of its metadata.

aufs copies a file up whole on the first change; the copy must be indistinguishable
from the original (owner, mode incl. setuid bits, times, xattrs), or a container would
see its image change under it. A copy is made under a hidden temporary name and renamed
into place, so a failed copy-up never leaves a half-written file visible in the union.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from ... import whiteouts


def copy_xattrs(src: bytes, dst: bytes) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.ENODATA, errno.EPERM):
                raise


def apply_metadata(dst: bytes, st: os.stat_result) -> None:
    """Owner first (chown clears setuid bits), then the exact mode, xattrs, then times."""
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_dir(src: bytes, dst: bytes) -> None:
    """Make directory `dst` with `src`'s metadata (not its contents)."""
    st = os.lstat(src)
    os.mkdir(dst, 0o700)
    try:
        copy_xattrs(src, dst)
        apply_metadata(dst, st)
    except BaseException:
        os.rmdir(dst)
        raise


def copy_node(src: bytes, dst: bytes, tmp_name: bytes) -> None:
    """Copy file, symlink or special file `src` to `dst` (whose directory exists)."""
    st = os.lstat(src)
    tmp = os.path.join(os.path.dirname(dst), whiteouts.META_PREFIX_B + tmp_name)
    mode = st.st_mode
    try:
        if stat.S_ISREG(mode):
            shutil.copyfile(src, tmp)  # copy_file_range/sendfile: no bytes pass through Python
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), tmp)
        else:
            os.mknod(tmp, mode, st.st_rdev)
        copy_xattrs(src, tmp)
        apply_metadata(tmp, st)
        os.rename(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

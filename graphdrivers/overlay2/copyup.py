"""Copying files of lower layers up into a layer's diff dir, as overlayfs does.

A layer tar may hard-link to a file that lives in a lower layer (the naive diff of a
union produces such tars). The diff dir alone has no such file, so while the tar is
applied natively such a target is copied up: the file and any missing parent directories,
with data, mode, owner, times and xattrs (overlay's own xattrs excepted), which leaves
the union's view unchanged.
"""

from __future__ import annotations

import os
import shutil
import stat

from ..whiteouts import OVERLAY_XATTR_PREFIXES
from .changes import LowerView


def copy_up(upper: str, lowers: list[str], targets: set[str]) -> list[str]:
    """Copy each regular-file target the lower stack shows (and the upper lacks) into
    `upper`; returns the paths made, parents first, so a caller can undo them."""
    made: list[str] = []
    try:
        _copy_up(upper, lowers, targets, made)
    except BaseException:  # leave nothing half made
        for path in reversed(made):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)
        raise
    return made


def _copy_up(upper: str, lowers: list[str], targets: set[str], made: list[str]) -> None:
    dirs: list[tuple[str, os.stat_result]] = []
    for target in sorted(targets):
        *parents, name = target.split("/")
        view, here = LowerView(lowers), upper
        for part in parents:
            found = view.lookup(part)
            here = os.path.join(here, part)
            if found is None or not stat.S_ISDIR(found[1].st_mode) or os.path.islink(here):
                break
            if not os.path.lexists(here):
                os.mkdir(here)
                made.append(here)
                _copy_attrs(found[0], here, found[1])
                dirs.append((here, found[1]))
            elif not os.path.isdir(here):
                break
            view = view.child(part)
        else:
            found = view.lookup(name)
            dest = os.path.join(here, name)
            if found is not None and stat.S_ISREG(found[1].st_mode) and not os.path.lexists(dest):
                made.append(dest)
                shutil.copyfile(found[0], dest)
                _copy_attrs(found[0], dest, found[1])
    for path, st in reversed(dirs):  # directory times last: making their children moved them
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_attrs(source: str, dest: str, st: os.stat_result) -> None:
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(source):
        if not name.startswith(OVERLAY_XATTR_PREFIXES):
            os.setxattr(dest, name, os.getxattr(source, name))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))

"""Copying files of lower layers up into a layer's diff dir, as overlayfs does.

A layer tar may hard-link to a file that lives in a lower layer (the naive diff of a
union produces such tars). The diff dir alone has no such file, so before applying the
tar natively the targets are copied up: the file and any missing parent directories,
with data, mode, owner, times and xattrs (overlay's own xattrs excepted), which leaves
the union's view unchanged.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from typing import IO

from .changes import OVERLAY_XATTR_PREFIXES, LowerView


def missing_link_targets(stream: IO[bytes]) -> set[str]:
    """Targets of hard links in the tar that are not entries of the tar itself."""
    names: set[str] = set()
    targets: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            names.add(_clean(member.name))
            if member.islnk():
                targets.add(_clean(member.linkname))
    return {t for t in targets - names if t}


def _clean(name: str) -> str:
    cleaned = os.path.normpath("/" + name).lstrip("/")
    return "" if cleaned in (".", "") else cleaned


def copy_up(upper: str, lowers: list[str], targets: set[str]) -> list[str]:
    """Copy each regular-file target the lower stack shows (and the upper lacks) into
    `upper`; returns the paths made, parents first, so a caller can undo them."""
    made: list[str] = []
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
                _copy_attrs(found[0], here, found[1])
                made.append(here)
                dirs.append((here, found[1]))
            elif not os.path.isdir(here):
                break
            view = view.child(part)
        else:
            found = view.lookup(name)
            dest = os.path.join(here, name)
            if found is not None and stat.S_ISREG(found[1].st_mode) and not os.path.lexists(dest):
                shutil.copyfile(found[0], dest)
                _copy_attrs(found[0], dest, found[1])
                made.append(dest)
    for path, st in reversed(dirs):  # directory times last: making their children moved them
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return made


def _copy_attrs(source: str, dest: str, st: os.stat_result) -> None:
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(source):
        if not name.startswith(OVERLAY_XATTR_PREFIXES):
            os.setxattr(dest, name, os.getxattr(source, name))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def undo(made: list[str]) -> None:
    for path in reversed(made):
        if os.path.isdir(path):
            os.rmdir(path)
        else:
            os.unlink(path)

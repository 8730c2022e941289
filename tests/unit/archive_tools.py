"""Helpers of the archive and naivediff tests: build layer tars in memory (any header,
hostile ones too, through graphdrivers.archive.build), and take a full snapshot of a tree
(everything apply_layer must preserve or restore)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable

from graphdrivers.archive.build import LayerBuilder
from graphdrivers.archive.journal import read_xattrs


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: float = 1_600_000_000,
    linkname: str = "",
    dev: tuple[int, int] = (0, 0),
    xattrs: dict[str, bytes] | None = None,
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in (xattrs or {}).items():
        info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    info.pax_headers.update(pax or {})
    return info, data


def build_tar(members: Iterable[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """The members, exactly as given, as a tar in memory (the project's one builder)."""
    builder = LayerBuilder(format=fmt)
    for info, data in members:
        builder.add(info, data)
    return builder.getvalue()


def stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def snapshot(root: str) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, mtime_ns, rdev, xattrs, content digest / link target,
    hard-link group); the root itself is "."."""
    out: dict[str, tuple] = {}
    groups: dict[tuple[int, int], list[str]] = {}

    def visit(full: str, rel: str) -> None:
        st = os.lstat(full)
        fmt = stat.S_IFMT(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                body: object = hashlib.sha256(f.read()).hexdigest()
            groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(full)
        else:
            body = None
        out[rel] = [fmt, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, st.st_rdev,
                    read_xattrs(full, follow_symlinks=False), body]
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full)):
                visit(os.path.join(full, name), name if rel == "." else f"{rel}/{name}")

    visit(root, ".")
    for paths in groups.values():
        for path in paths:
            out[path].append(tuple(sorted(paths)))
    return {k: tuple(v) for k, v in out.items()}


def without_root_and_times_of(snap: dict[str, tuple], *dirs: str) -> dict[str, tuple]:
    """The snapshot without the root entry; the mtimes of `dirs` blanked."""
    out = {}
    for path, value in snap.items():
        if path == ".":
            continue
        if path in dirs:
            value = (*value[:4], None, *value[5:])
        out[path] = value
    return out

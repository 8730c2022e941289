"""Write layer tars: the changes of a layer (`export_paths`) or a driver's own layer
directory with its whiteout representation (`export_dir`), as PAX tar streams.

The output is deterministic -- sorted paths, whiteouts before their siblings, numeric
owners with empty user/group names, nanosecond mtimes -- so the same tree always gives
the same bytes (whiteouts carry mtime 0 for the same reason).
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, BinaryIO, Protocol

from .. import whiteouts as wh
from .journal import read_xattrs
from .stream import writer_stream
from .tarread import BLOCK

_CHUNK = 1 << 20


class ChangeLike(Protocol):
    path: str
    kind: str


def _sort_key(path: str, whiteout: bool) -> tuple[tuple[int, str], ...]:
    """Path order, except that a whiteout comes before every sibling of its directory."""
    parts = path.strip("/").split("/")
    key = tuple((1, part) for part in parts)
    if whiteout:
        key = (*key[:-1], (0, parts[-1]))
    return key


def read_exactly(fd: int, size: int, name: str) -> Iterator[bytes]:
    """The first `size` bytes of the open file `fd`, in chunks: a tar header already
    promised that many, so a file that is shorter now is an error, not a short member."""
    left = size
    while left:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            raise OSError(f"{name} is shorter than its tar header says ({size - left} of {size} bytes)")
        left -= len(chunk)
        yield chunk


class _TarWriter:
    """Just enough of a tar writer for layers, with hard-link detection by (dev, ino)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.links: dict[tuple[int, int], str] = {}

    def whiteout(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.mode = 0
        info.mtime = 0
        self._header(info)

    def entry(self, name: str, full: str, st: os.stat_result, *, skip_xattrs: tuple[str, ...] = ()) -> None:
        """Write the entry `name` from the file `full` (already lstat'ed as `st`), leaving
        out the xattrs whose names start with one of `skip_xattrs`."""
        info = tarfile.TarInfo(name)
        mode = st.st_mode
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        seconds, nanos = divmod(st.st_mtime_ns, 1_000_000_000)
        info.mtime = seconds
        if nanos:
            info.pax_headers["mtime"] = f"{seconds}.{nanos:09d}"
        xattrs = read_xattrs(full, follow_symlinks=False)
        if skip_xattrs:
            xattrs = {k: v for k, v in xattrs.items() if not k.startswith(skip_xattrs)}
        for key in sorted(xattrs):
            info.pax_headers["SCHILY.xattr." + key] = xattrs[key].decode("utf-8", "surrogateescape")
        data = None
        if stat.S_ISREG(mode):
            if st.st_nlink > 1:
                first = self.links.setdefault((st.st_dev, st.st_ino), name)
                if first != name:
                    info.type = tarfile.LNKTYPE
                    info.linkname = first
                    self._header(info)
                    return
            info.type = tarfile.REGTYPE
            info.size = st.st_size
            data = full
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(full)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            return  # sockets cannot be archived (tar and Docker skip them too)
        self._header(info)
        if data is not None:
            self._data(data, info.size)

    def _header(self, info: tarfile.TarInfo) -> None:
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _data(self, full: str, size: int) -> None:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for chunk in read_exactly(fd, size, full):
                self.out.write(chunk)
        finally:
            os.close(fd)
        pad = -size % BLOCK
        if pad:
            self.out.write(bytes(pad))

    def finish(self) -> None:
        self.out.write(bytes(2 * BLOCK))


def export_paths(root: str, changes: Iterable[ChangeLike], on_close: Callable[[], None] | None = None) -> IO[bytes]:
    """A tar stream of `changes` of the layer at `root`: entries for "A"/"C", a
    `.wh.<name>` whiteout for each "D"."""
    items = sorted((_sort_key(c.path, c.kind == "D"), c.path, c.kind) for c in changes)

    def write(out: BinaryIO) -> None:
        tar = _TarWriter(out)
        for _, path, kind in items:
            rel = path.strip("/")
            if kind == "D":
                tar.whiteout(wh.whiteout_path(rel))
            else:
                full = os.path.join(root, rel)
                tar.entry(rel, full, os.lstat(full))
        tar.finish()

    return writer_stream(write, on_close)


def _walk_layer(root: str, form: wh.WhiteoutFormat) -> Iterator[tuple[str, str, str, os.stat_result | None]]:
    """(kind, name, full path, stat) of a driver's layer directory in tar order, with its
    whiteouts translated: kind "entry" or "whiteout" (name is the `.wh.` name)."""
    if form is wh.DELETE:
        raise ValueError("whiteouts must be a format that stores marks (overlay or aufs), not 'delete'")

    def walk(full_dir: str, rel_dir: str) -> Iterator[tuple[str, str, str, os.stat_result | None]]:
        items = []
        with os.scandir(full_dir) as it:
            for e in it:
                if form.skipped(e.name):
                    continue
                st = e.stat(follow_symlinks=False)
                rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                if form.marks_are_entries():  # the mark is a `.wh.` file: export it as it is
                    items.append((_sort_key(rel, wh.is_whiteout_name(e.name)), "entry", rel, e.path, st))
                elif form.hides(e.name, st) is not None:
                    items.append((_sort_key(rel, True), "whiteout", wh.whiteout_path(rel), e.path, None))
                else:
                    items.append((_sort_key(rel, False), "entry", rel, e.path, st))
        for _, kind, rel, full, st in sorted(items):
            yield kind, rel, full, st
            if st is not None and stat.S_ISDIR(st.st_mode):
                if not form.marks_are_entries() and form.is_opaque(full):
                    yield "whiteout", f"{rel}/{wh.OPAQUE}", full, None
                yield from walk(full, rel)

    return walk(root, "")


def export_dir(
    root: str, *, whiteouts: str | wh.WhiteoutFormat, on_close: Callable[[], None] | None = None
) -> IO[bytes]:
    """A tar stream of a driver's own layer directory (an overlay upper dir or an aufs
    branch), its whiteouts converted to `.wh.` entries."""
    form = wh.format_of(whiteouts)
    entries = _walk_layer(root, form)  # validates `whiteouts` now, not in the thread

    def write(out: BinaryIO) -> None:
        tar = _TarWriter(out)
        for kind, rel, full, st in entries:
            if kind == "whiteout":
                tar.whiteout(rel)
            else:
                assert st is not None
                tar.entry(rel, full, st, skip_xattrs=form.private_xattrs)
        tar.finish()

    return writer_stream(write, on_close)


def dir_diff_size(root: str, *, whiteouts: str | wh.WhiteoutFormat) -> int:
    """Bytes of regular-file data `export_dir` would carry (hard links once)."""
    form = wh.format_of(whiteouts)
    return regular_bytes(st for kind, _rel, _full, st in _walk_layer(root, form) if kind == "entry")


def regular_bytes(stats: Iterable[os.stat_result | None]) -> int:
    """Bytes of regular-file data among `stats`, a hard-linked file counted once: what a
    layer tar of those entries carries, and what applying it returns."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for st in stats:
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        total += st.st_size
    return total

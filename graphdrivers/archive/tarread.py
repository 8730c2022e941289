"""A strict streaming reader of layer tars (ustar, PAX, GNU long names).

Why not `tarfile` in stream mode: it treats a stream that simply stops (or turns into
garbage) between two members as a normal end of archive, and a layer must never be
half-applied silently. This reader knows its exact position, insists on the
end-of-archive block, refuses what a layer cannot contain (sparse files, volume
headers), and is faster because it does only what a layer needs. Header fields are
decoded by `tarfile.TarInfo.frombuf`, the standard library's checksum-verifying parser.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from ..errors import UnsafeArchive

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_MAX_META = 1 << 20  # a PAX or GNU long-name header larger than this is not a real layer's

REG = b"0"
LNK = b"1"
SYM = b"2"
CHR = b"3"
BLK = b"4"
DIR = b"5"
FIFO = b"6"
_REG_ALIASES = {b"\0": REG, b"0": REG, b"7": REG}
_MEMBER_TYPES = {REG, LNK, SYM, CHR, BLK, DIR, FIFO}
_XATTR = "SCHILY.xattr."


@dataclass(slots=True)
class Entry:
    """One member of the archive; the data of a regular file follows via `TarReader.read_into`."""

    name: str
    type: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


def _parse_time_ns(text: str, key: str) -> int:
    """PAX times are decimal seconds with an optional fraction: keep every nanosecond."""
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise UnsafeArchive(f"bad PAX {key} value {text!r}")
    return sign * (int(whole) * 1_000_000_000 + int((frac + "000000000")[:9]))


def _parse_pax(data: bytes) -> dict[str, bytes]:
    """PAX records `"<len> <key>=<value>\\n"`; values stay bytes (xattrs are binary)."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # some writers pad the record block with NULs
            break
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise UnsafeArchive("malformed PAX header record")
        length = int(data[pos:space])
        end = pos + length
        if length < 5 or end > len(data) or data[end - 1 : end] != b"\n":
            raise UnsafeArchive("malformed PAX header record length")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise UnsafeArchive("malformed PAX header record without '='")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


class TarReader:
    """Iterate `entries()`; after each regular file, its data is read with `read_into`
    (or skipped automatically when the next entry is requested)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.offset = 0  # bytes consumed
        self._pending = 0  # data bytes (incl. padding) of the current entry not read yet

    def _read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) < n:
            chunks = [data]
            got = len(data)
            while got < n:
                more = self._stream.read(n - got)
                if not more:
                    raise UnsafeArchive(
                        f"truncated archive: the stream ended at byte {self.offset + got} "
                        f"while {n - got} more bytes were expected"
                    )
                chunks.append(more)
                got += len(more)
            data = b"".join(chunks)
        self.offset += n
        return data

    def _skip_pending(self) -> None:
        while self._pending:
            n = min(self._pending, 1 << 20)
            self._read(n)
            self._pending -= n

    def read_chunks(self, size: int) -> Iterator[bytes]:
        """The current regular file's data in chunks; then its padding is consumed."""
        left = size
        while left:
            chunk = self._read(min(left, 1 << 20))
            left -= len(chunk)
            self._pending -= len(chunk)
            yield chunk
        self._skip_pending()

    def _meta(self, size: int, what: str) -> bytes:
        if size > _MAX_META:
            raise UnsafeArchive(f"{what} header of {size} bytes is too large")
        data = self._read(_padded(size))[:size]
        return data

    def entries(self) -> Iterator[Entry]:
        global_pax: dict[str, bytes] = {}
        pax: dict[str, bytes] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            self._skip_pending()
            start = self.offset
            buf = self._read(BLOCK)
            if buf == _ZERO_BLOCK:
                if pax or long_name is not None or long_link is not None:
                    raise UnsafeArchive("archive ends after an extended header without its member")
                self._drain()
                return
            try:
                info = tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise UnsafeArchive(f"not a valid tar header at byte {start}: {exc}") from None
            kind = info.type
            size = info.size
            if size < 0:
                raise UnsafeArchive(f"negative size in the tar header at byte {start}")
            if kind == tarfile.XHDTYPE:
                pax.update(_parse_pax(self._meta(size, "PAX")))
                continue
            if kind == tarfile.XGLTYPE:
                global_pax.update(_parse_pax(self._meta(size, "PAX global")))
                continue
            if kind == tarfile.GNUTYPE_LONGNAME:
                long_name = self._meta(size, "GNU long name").split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            if kind == tarfile.GNUTYPE_LONGLINK:
                long_link = self._meta(size, "GNU long link").split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            kind = _REG_ALIASES.get(kind, kind)
            if kind not in _MEMBER_TYPES:
                raise UnsafeArchive(f"unsupported tar member type {kind!r} for {info.name!r} at byte {start}")
            records = {**global_pax, **pax} if global_pax else pax
            entry = self._entry(info, kind, records, long_name, long_link)
            pax, long_name, long_link = {}, None, None
            if entry.type == REG:
                self._pending = _padded(entry.size)
            else:
                entry.size = 0  # as in tarfile and Go's archive/tar, no data follows other types
            yield entry

    def _entry(
        self, info: tarfile.TarInfo, kind: bytes, records: dict[str, bytes], name: str | None, link: str | None
    ) -> Entry:
        path = info.name if name is None else name
        linkname = info.linkname if link is None else link
        if info.type == tarfile.AREGTYPE and path.endswith("/"):
            kind = DIR  # old tars mark directories by a trailing slash only
        size, uid, gid = info.size, info.uid, info.gid
        mtime_ns = int(info.mtime) * 1_000_000_000
        atime_ns: int | None = None
        xattrs: dict[str, bytes] = {}
        for key, value in records.items():
            if key.startswith(_XATTR):
                xattrs[key[len(_XATTR) :]] = value
            elif key == "path":
                path = value.decode("utf-8", "surrogateescape")
            elif key == "linkpath":
                linkname = value.decode("utf-8", "surrogateescape")
            elif key in ("size", "uid", "gid"):
                if not value.isdigit():
                    raise UnsafeArchive(f"bad PAX {key} value {value!r} for {path!r}")
                if key == "size":
                    size = int(value)
                elif key == "uid":
                    uid = int(value)
                else:
                    gid = int(value)
            elif key == "mtime":
                mtime_ns = _parse_time_ns(value.decode("ascii", "replace"), key)
            elif key == "atime":
                atime_ns = _parse_time_ns(value.decode("ascii", "replace"), key)
            elif key.startswith("GNU.sparse"):
                raise UnsafeArchive(f"sparse member {path!r} is not supported in a layer")
        return Entry(
            name=path,
            type=kind,
            size=size,
            mode=info.mode & 0o7777,
            uid=uid,
            gid=gid,
            mtime_ns=mtime_ns,
            atime_ns=mtime_ns if atime_ns is None else atime_ns,
            linkname=linkname,
            devmajor=info.devmajor,
            devminor=info.devminor,
            xattrs=xattrs,
        )

    def _drain(self) -> None:
        """Read what follows the end-of-archive block, as Docker does, so the writer of a pipe
        does not fail with EPIPE; what is there (the second zero block, padding) is ignored."""
        while self._stream.read(1 << 16):
            pass


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK

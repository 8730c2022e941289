"""A strict streaming reader of layer tars (ustar, PAX, GNU long names).

Why not `tarfile` in stream mode: it treats a stream that simply stops (or turns into
garbage) between two members as a normal end of archive, and a layer must never be
half-applied silently. This reader knows its exact position, insists on the
end-of-archive block, refuses what a layer cannot contain (sparse files, volume
headers), and is faster because it does only what a layer needs. Header fields are
headers are decoded here directly (ustar, GNU and v7 blocks, checksum verified).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from ..errors import UnsafeArchive

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_MAX_META = 1 << 20
_SMALL = 1 << 18  # a PAX or GNU long-name header larger than this is not a real layer's

REG = b"0"
LNK = b"1"
SYM = b"2"
CHR = b"3"
BLK = b"4"
DIR = b"5"
FIFO = b"6"
XHD = b"x"
XGL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
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
    aregtype: bool = False  # typeflag NUL: a trailing slash of a long name still means a directory


def _number(field: bytes, what: str, start: int) -> int:
    """A numeric header field: octal text, or GNU base-256 when the top bit is set."""
    if field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    nul = field.find(0)
    if nul >= 0:
        field = field[:nul]
    try:
        return int(field, 8) if field.strip() else 0  # int() ignores surrounding spaces
    except ValueError:
        raise UnsafeArchive(f"not a valid tar header at byte {start}: bad {what} field {field!r}") from None


def _text(field: bytes) -> str:
    nul = field.find(0)
    return (field if nul < 0 else field[:nul]).decode("utf-8", "surrogateescape")


def _check_block(buf: bytes, start: int) -> tuple[bytes, int]:
    """(typeflag, size) of a header block whose checksum is right."""
    expected = _number(buf[148:156], "checksum", start)
    unsigned = sum(buf) - sum(buf[148:156]) + 256  # the field itself counts as 8 spaces
    if expected != unsigned:
        signed = unsigned - 256 * sum(1 for b in buf[:148] + buf[156:] if b > 127)  # some old writers
        if expected != signed:
            raise UnsafeArchive(f"not a valid tar header at byte {start}: bad checksum")
    size = _number(buf[124:136], "size", start)
    if size < 0:
        raise UnsafeArchive(f"negative size in the tar header at byte {start}")
    return buf[156:157], size


def _member(buf: bytes, start: int, kind: bytes, size: int) -> Entry:
    """Decode the member fields of a checked ustar/GNU/v7 header block."""
    name = _text(buf[0:100])
    if buf[345] and buf[257:263] == b"ustar\0":
        name = _text(buf[345:500]) + "/" + name  # the POSIX prefix field
    mtime_ns = _number(buf[136:148], "mtime", start) * 1_000_000_000
    entry = Entry(
        name,
        kind,
        size,
        _number(buf[100:108], "mode", start) & 0o7777,
        _number(buf[108:116], "uid", start),
        _number(buf[116:124], "gid", start),
        mtime_ns,
        mtime_ns,
        _text(buf[157:257]) if buf[157] else "",
    )
    if kind in (CHR, BLK):
        entry.devmajor = _number(buf[329:337], "devmajor", start)
        entry.devminor = _number(buf[337:345], "devminor", start)
    elif kind == b"\0":
        entry.aregtype = True
        if name.endswith("/"):
            entry.type = DIR  # old tars mark directories by a trailing slash only
    return entry


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
        if self._pending <= _SMALL:  # one read for data and padding
            data = self._read(self._pending)
            self._pending = 0
            yield data[:size] if len(data) != size else data
            return
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
            kind, size = _check_block(buf, start)
            if kind == XHD:
                pax.update(_parse_pax(self._meta(size, "PAX")))
                continue
            if kind == XGL:
                global_pax.update(_parse_pax(self._meta(size, "PAX global")))
                continue
            if kind == GNU_LONGNAME:
                long_name = self._meta(size, "GNU long name").split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            if kind == GNU_LONGLINK:
                long_link = self._meta(size, "GNU long link").split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            header = _member(buf, start, kind, size)
            kind = _REG_ALIASES.get(header.type, header.type)
            if kind not in _MEMBER_TYPES:
                raise UnsafeArchive(f"unsupported tar member type {kind!r} for {header.name!r} at byte {start}")
            header.type = kind
            records = {**global_pax, **pax} if global_pax else pax
            entry = self._entry(header, records, long_name, long_link) if records or long_name or long_link else header
            pax, long_name, long_link = {}, None, None
            if entry.type == REG:
                self._pending = _padded(entry.size)
            else:
                entry.size = 0  # as in tarfile and Go's archive/tar, no data follows other types
            yield entry

    def _entry(self, entry: Entry, records: dict[str, bytes], name: str | None, link: str | None) -> Entry:
        """Fold PAX records and GNU long names into the member's own header."""
        if name is not None:
            entry.name = name
            if entry.type == REG and entry.aregtype and name.endswith("/"):
                entry.type = DIR  # old tars mark directories by a trailing slash only
        if link is not None:
            entry.linkname = link
        atime_ns: int | None = None
        for key, value in records.items():
            if key.startswith(_XATTR):
                entry.xattrs[key[len(_XATTR) :]] = value
            elif key == "path":
                entry.name = value.decode("utf-8", "surrogateescape")
            elif key == "linkpath":
                entry.linkname = value.decode("utf-8", "surrogateescape")
            elif key in ("size", "uid", "gid"):
                if not value.isdigit():
                    raise UnsafeArchive(f"bad PAX {key} value {value!r} for {entry.name!r}")
                setattr(entry, key, int(value))
            elif key == "mtime":
                entry.mtime_ns = _parse_time_ns(value.decode("ascii", "replace"), key)
            elif key == "atime":
                atime_ns = _parse_time_ns(value.decode("ascii", "replace"), key)
            elif key.startswith("GNU.sparse"):
                raise UnsafeArchive(f"sparse member {entry.name!r} is not supported in a layer")
        entry.atime_ns = entry.mtime_ns if atime_ns is None else atime_ns
        return entry

    def _drain(self) -> None:
        """Read what follows the end-of-archive block, as Docker does, so the writer of a pipe
        does not fail with EPIPE; what is there (the second zero block, padding) is ignored."""
        while self._stream.read(1 << 16):
            pass


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK

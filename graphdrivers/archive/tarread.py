"""A strict streaming reader of layer tars (ustar, PAX, GNU long names).

Why not `tarfile` in stream mode: it treats a stream that simply stops (or turns into
garbage) between two members as a normal end of archive, and a layer must never be
half-applied silently. This reader knows its exact position, insists on the
end-of-archive block, refuses what a layer cannot contain (sparse files, volume
headers), and is faster because it does only what a layer needs. Header blocks (ustar,
GNU, v7) are decoded here directly, checksum verified.

`HeaderDecoder` is that header grammar without a stream: the engine's tar-split recorder
pushes it the bytes a driver is applying, so there is one reading of a tar header.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from ..errors import UnsafeArchive

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_MAX_META = 1 << 20  # a PAX or GNU long-name header larger than this is not a real layer's
_SMALL = 1 << 18  # file data up to this size is read in one piece
_ADLER_MOD = 65521

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
_EXTENSIONS = {XHD: "PAX", XGL: "PAX global", GNU_LONGNAME: "GNU long name", GNU_LONGLINK: "GNU long link"}


@dataclass(slots=True)
class Entry:
    """One member of the archive; a regular file's data follows via `TarReader.read_chunks`."""

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
    """A numeric header field: octal text, or GNU base-256 when the top bit is set. The hot
    paths inline `int(field.rstrip(b"\\0 "), 8)` and come here only when that fails."""
    if field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    nul = field.find(0)
    if nul >= 0:
        field = field[:nul]  # junk after the terminating NUL is ignored, as tar does
    try:
        return int(field, 8) if field.strip() else 0  # int() ignores surrounding spaces
    except ValueError:
        raise UnsafeArchive(f"not a valid tar header at byte {start}: bad {what} field {field!r}") from None


def _text(field: bytes) -> str:
    nul = field.find(0)
    return (field if nul < 0 else field[:nul]).decode("utf-8", "surrogateescape")


def _check_block(buf: bytes, start: int) -> tuple[bytes, int]:
    """(typeflag, size) of a header block whose checksum is right."""
    try:
        expected = int(buf[148:156].rstrip(b"\0 "), 8)
    except ValueError:
        expected = _number(buf[148:156], "checksum", start)
    # The checksum is the byte sum with the field itself counted as 8 spaces. adler32's low
    # half is that sum modulo 65521, ten times faster than sum(); a block sums to at most
    # 130560, so the true sum is one of two candidates.
    low = ((zlib.adler32(buf) & 0xFFFF) - 1 - sum(buf[148:156]) + 256) % _ADLER_MOD
    if expected % _ADLER_MOD != low or expected > 512 * 255:
        unsigned = sum(buf) - sum(buf[148:156]) + 256
        signed = unsigned - 256 * sum(1 for b in buf[:148] + buf[156:] if b > 127)  # some old writers
        if expected != signed:
            raise UnsafeArchive(f"not a valid tar header at byte {start}: bad checksum")
    try:
        size = int(buf[124:136].rstrip(b"\0 "), 8)
    except ValueError:
        size = _number(buf[124:136], "size", start)
    if size < 0:
        raise UnsafeArchive(f"negative size in the tar header at byte {start}")
    return buf[156:157], size


_FIELDS = struct.Struct("100s8s8s8s12s12s8x1s100s6s2x64x8s8s155s")


def _member(buf: bytes, start: int, kind: bytes, size: int) -> Entry:
    """Decode the member fields of a checked ustar/GNU/v7 header block."""
    name, mode, uid, gid, _, mtime, _, link, magic, major, minor, prefix = _FIELDS.unpack_from(buf)
    try:
        mode_n = int(mode.rstrip(b"\0 "), 8)
        uid_n = int(uid.rstrip(b"\0 "), 8)
        gid_n = int(gid.rstrip(b"\0 "), 8)
        mtime_n = int(mtime.rstrip(b"\0 "), 8)
    except ValueError:  # base-256, empty or odd fields
        mode_n = _number(mode, "mode", start)
        uid_n = _number(uid, "uid", start)
        gid_n = _number(gid, "gid", start)
        mtime_n = _number(mtime, "mtime", start)
    if uid_n < 0 or gid_n < 0:
        raise UnsafeArchive(f"negative owner in the tar header at byte {start}")
    name = _text(name)
    if prefix[0] and magic == b"ustar\0":
        name = _text(prefix) + "/" + name  # the POSIX prefix field
    mtime_ns = mtime_n * 1_000_000_000
    entry = Entry(name, kind, size, mode_n & 0o7777, uid_n, gid_n, mtime_ns, mtime_ns, _text(link) if link[0] else "")
    if kind in (CHR, BLK):
        entry.devmajor = _number(major, "devmajor", start)
        entry.devminor = _number(minor, "devminor", start)
        if entry.devmajor < 0 or entry.devminor < 0:
            raise UnsafeArchive(f"negative device number in the tar header at byte {start}")
    elif kind == b"\0":
        entry.aregtype = True
        if name.endswith("/"):
            entry.type = DIR  # old tars mark directories by a trailing slash only
    return entry


def _parse_time_ns(value: bytes, key: str) -> int:
    """PAX times are decimal seconds with an optional fraction: keep every nanosecond."""
    whole, _, frac = value.partition(b".")
    sign = 1
    if whole.startswith(b"-"):
        sign, whole = -1, whole[1:]
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise UnsafeArchive(f"bad PAX {key} value {value!r}")
    return sign * (int(whole) * 1_000_000_000 + (int(frac[:9].ljust(9, b"0")) if frac else 0))


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


@dataclass(slots=True, frozen=True)
class Extension:
    """An extended header block (PAX, PAX global, GNU long name or link): `size` bytes of
    payload follow it, padded to a block, for `HeaderDecoder.extend`."""

    kind: bytes
    size: int


class HeaderDecoder:
    """The tar header grammar: checked header blocks, PAX records, GNU long names, folded
    into members.

    It holds no stream, so two kinds of reader share it: `TarReader` pulls blocks from a
    stream it owns, and an observer of a stream that someone else reads (the engine's
    tar-split recorder, fed the bytes a driver applies) pushes them. Both therefore agree
    on where every member and its data start.
    """

    def __init__(self) -> None:
        self._global_pax: dict[str, bytes] = {}
        self._pax: dict[str, bytes] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None

    def header(self, buf: bytes, start: int) -> Entry | Extension | None:
        """What the header block `buf` at byte `start` holds: a member (a regular file's
        `size` bytes of data follow it, padded; no other type has data), an extended header
        whose payload follows, or None for the end-of-archive block."""
        if buf == _ZERO_BLOCK:
            if self._pax or self._long_name is not None or self._long_link is not None:
                raise UnsafeArchive("archive ends after an extended header without its member")
            return None
        kind, size = _check_block(buf, start)
        if kind in _EXTENSIONS:
            if size > _MAX_META:
                raise UnsafeArchive(f"{_EXTENSIONS[kind]} header of {size} bytes is too large")
            return Extension(kind, size)
        header = _member(buf, start, kind, size)
        kind = _REG_ALIASES.get(header.type, header.type)
        if kind not in _MEMBER_TYPES:
            raise UnsafeArchive(f"unsupported tar member type {kind!r} for {header.name!r} at byte {start}")
        header.type = kind
        records = {**self._global_pax, **self._pax} if self._global_pax else self._pax
        if records or self._long_name is not None or self._long_link is not None:
            entry = self._entry(header, records, self._long_name, self._long_link)
        else:
            entry = header
        self._pax, self._long_name, self._long_link = {}, None, None
        if entry.type != REG:
            entry.size = 0  # as in tarfile and Go's archive/tar, no data follows other types
        return entry

    def extend(self, extension: Extension, payload: bytes) -> None:
        """Take the (unpadded) payload of an extended header for the next member."""
        if extension.kind == XHD:
            self._pax.update(_parse_pax(payload))
        elif extension.kind == XGL:
            self._global_pax.update(_parse_pax(payload))
        elif extension.kind == GNU_LONGNAME:
            self._long_name = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        else:
            self._long_link = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

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
            if key == "mtime":
                entry.mtime_ns = _parse_time_ns(value, key)
            elif key.startswith(_XATTR):
                entry.xattrs[key[len(_XATTR) :]] = value
            elif key == "path":
                entry.name = value.decode("utf-8", "surrogateescape")
            elif key == "linkpath":
                entry.linkname = value.decode("utf-8", "surrogateescape")
            elif key in ("size", "uid", "gid"):
                if not value.isdigit():
                    raise UnsafeArchive(f"bad PAX {key} value {value!r} for {entry.name!r}")
                setattr(entry, key, int(value))
            elif key == "atime":
                atime_ns = _parse_time_ns(value, key)
            elif key.startswith("GNU.sparse"):
                raise UnsafeArchive(f"sparse member {entry.name!r} is not supported in a layer")
        entry.atime_ns = entry.mtime_ns if atime_ns is None else atime_ns
        return entry


class TarReader:
    """Iterate `entries()`; after each regular file, its data is read with `read_chunks`
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

    def entries(self) -> Iterator[Entry]:
        decoder = HeaderDecoder()
        while True:
            self._skip_pending()
            start = self.offset
            item = decoder.header(self._read(BLOCK), start)
            if item is None:
                self._drain()
                return
            if isinstance(item, Extension):
                decoder.extend(item, self._read(padded(item.size))[: item.size])
                continue
            if item.type == REG:
                self._pending = padded(item.size)
            yield item

    def _drain(self) -> None:
        """Read what follows the end-of-archive block, as Docker does, so the writer of a pipe
        does not fail with EPIPE; what is there (the second zero block, padding) is ignored."""
        while self._stream.read(1 << 16):
            pass


def padded(size: int) -> int:
    """`size` rounded up to whole tar blocks."""
    return (size + BLOCK - 1) // BLOCK * BLOCK

"""eStargz: the seekable gzip layer format of stargz-snapshotter (docs/estargz.md), read and written.

Why it exists: a plain tar+gzip layer must be inflated from its first byte to reach any
file, so a container cannot start before the whole layer has arrived. eStargz keeps the
layer a valid gzip stream of a valid tar (every ordinary client pulls it as a plain
layer) but starts a new gzip member at every regular file's data (and every
`chunk_size` bytes of a large file), and ends with a TOC (`stargz.index.json`, a tar
entry of its own member) listing every entry, the blob offset of each chunk's member
and its sha256, and a 51-byte footer (an empty gzip member whose Extra field holds the
TOC's offset). A reader fetches the footer, then the TOC, then only the chunks it needs
(HTTP Range requests), verifying each against the TOC, which is itself verified against
the layer annotation `TOC_DIGEST_ANNOTATION` in the (digest-checked) manifest.

The writer follows stargz-snapshotter's `estargz.Build`/`Writer.AppendTar`: tar headers
go in the member open at that point, a regular file's data (each chunk) starts a new
member, prioritized files come first and are followed by the prefetch landmark (or the
whole layer follows the no-prefetch landmark), the TOC JSON's digest is the sha256 of its
bytes. The reader normalizes the TOC as stargz-snapshotter's `Reader.initFields` does
(chunk entries named after their file, the last chunk's size filled in).

It lives in graphdrivers because the aufs FUSE union serves lazy layers from it; the
engine writes it on `push --estargz` / `save --estargz`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import IO, Any

from ..errors import ChunkDigestMismatch, EstargzError, UnsafeArchive
from .tarread import BLK, BLOCK, CHR, DIR, FIFO, LNK, REG, SYM, Entry, TarReader, padded

log = logging.getLogger(__name__)

TOC_NAME = "stargz.index.json"
PREFETCH_LANDMARK = ".prefetch.landmark"
NO_PREFETCH_LANDMARK = ".no.prefetch.landmark"
TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size"
FOOTER_SIZE = 51
TOC_VERSION = 1

ENTRY_TYPES = ("dir", "reg", "symlink", "hardlink", "char", "block", "fifo", "chunk")
DATA_TYPES = ("reg", "chunk")
_LANDMARK_CONTENTS = b"\x0f"  # "4 bits contents 0xf", as stargz-snapshotter writes it
_RESERVED = (TOC_NAME, PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK)
_FOOTER_MAGIC = b"STARGZ"
_MAX_TOC_JSON = 1 << 30  # a TOC inflating past this is a gzip bomb, not a layer's index
_TAR_TYPES = {DIR: "dir", REG: "reg", SYM: "symlink", LNK: "hardlink", CHR: "char", BLK: "block", FIFO: "fifo"}

# JSON key -> (TocEntry field, type); order is the Go struct's, so to_json matches its layout
_JSON_FIELDS: tuple[tuple[str, str, type], ...] = (
    ("name", "name", str),
    ("type", "type", str),
    ("size", "size", int),
    ("modtime", "mod_time", str),
    ("linkName", "link_name", str),
    ("mode", "mode", int),
    ("uid", "uid", int),
    ("gid", "gid", int),
    ("userName", "uname", str),
    ("groupName", "gname", str),
    ("offset", "offset", int),
    ("innerOffset", "inner_offset", int),
    ("devMajor", "dev_major", int),
    ("devMinor", "dev_minor", int),
    ("xattrs", "xattrs", dict),
    ("digest", "digest", str),
    ("chunkOffset", "chunk_offset", int),
    ("chunkSize", "chunk_size", int),
    ("chunkDigest", "chunk_digest", str),
)


@dataclass(frozen=True)
class TocEntry:
    """One TOCEntry of the spec. `name` is as stored in the tar (a directory may end in
    "/"); `path` is the cleaned name readers look up. After parsing, a chunk entry carries
    its file's name and every data entry its real `chunk_size` (the JSON writes 0 for a
    file's last chunk). `num_link` is not in the JSON: it is counted from the entries
    (names of the entry, plus "." and subdirectories' ".." for a directory)."""

    name: str
    type: str
    size: int = 0
    mod_time: str = ""
    link_name: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    offset: int = 0
    inner_offset: int = 0
    chunk_offset: int = 0
    chunk_size: int = 0
    chunk_digest: str = ""
    digest: str = ""
    dev_major: int = 0
    dev_minor: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict, hash=False)
    num_link: int = 0

    @property
    def path(self) -> str:
        return clean_name(self.name)

    @property
    def mtime(self) -> float:
        """`mod_time` as seconds since the epoch (0 when empty: zero or unknown)."""
        return _parse_time(self.mod_time, self.name) if self.mod_time else 0.0


def clean_name(name: str) -> str:
    """A tar name as a lookup path: no leading "/" or "./", no trailing "/", no "..", as
    stargz-snapshotter's cleanEntryName."""
    return posixpath.normpath("/" + name).lstrip("/")


def _parse_time(text: str, name: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise EstargzError(f"TOC entry {name!r}: field 'modtime' is not an RFC 3339 time: {text!r}") from None


def _format_time(mtime_ns: int) -> str:
    """UTC RFC 3339 to the (rounded) second; empty for the zero time, as Go's formatModtime."""
    seconds = (mtime_ns + 500_000_000) // 1_000_000_000
    if seconds == 0:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Toc:
    """The parsed TOC: `entries` in blob order, lookups by path, and where each chunk's
    gzip member lies in the blob (`span`; needs `toc_offset`, which ends the last one)."""

    def __init__(self, entries: Iterable[TocEntry], *, version: int = TOC_VERSION,
                 toc_offset: int | None = None) -> None:
        self.version = version
        self.toc_offset = toc_offset
        self.entries: tuple[TocEntry, ...] = _normalize(list(entries))
        self._by_path: dict[str, TocEntry] = {}
        self._chunks: dict[str, list[TocEntry]] = {}
        for entry in self.entries:
            if entry.type == "chunk":
                self._chunks[entry.path].append(entry)
                continue
            self._by_path[entry.path] = entry
            if entry.type == "reg":
                self._chunks[entry.path] = [entry]
        self._next: dict[tuple[str, int], int | None] = {}
        end = toc_offset
        for entry in reversed(self.entries):
            if entry.type in DATA_TYPES:
                self._next[(entry.path, entry.chunk_offset)] = end
            if entry.offset and not entry.inner_offset:
                end = entry.offset

    @classmethod
    def from_json(cls, data: bytes, *, toc_offset: int | None = None) -> Toc:
        """Parse TOC JSON strictly: EstargzError naming the field on bad JSON or a wrong
        type; keys the spec does not define are ignored, as Go's decoder does."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise EstargzError(f"TOC is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise EstargzError("TOC is not a JSON object")
        version = doc.get("version")
        if type(version) is not int or version != TOC_VERSION:
            raise EstargzError(f"TOC field 'version' must be {TOC_VERSION}, not {version!r}")
        raw = doc.get("entries")
        if not isinstance(raw, list):
            raise EstargzError("TOC field 'entries' must be an array")
        return cls((_entry_from_json(i, item) for i, item in enumerate(raw)), version=version, toc_offset=toc_offset)

    def to_json(self) -> bytes:
        """The TOC as JSON, tab-indented with keys in the Go struct's order and empty
        fields left out; a file's last chunk has no chunkSize, as the spec requires."""
        out = []
        size = 0
        for entry in self.entries:
            if entry.type == "reg":
                size = entry.size
            item: dict[str, Any] = {}
            for key, attr, _ in _JSON_FIELDS:
                value = getattr(entry, attr)
                if attr == "chunk_size" and entry.chunk_offset + value == size and entry.type in DATA_TYPES:
                    value = 0
                if attr == "xattrs":
                    value = {k: base64.b64encode(v).decode() for k, v in sorted(value.items())}
                if value:
                    item[key] = value
            out.append(item)
        return json.dumps({"version": self.version, "entries": out}, indent="\t", ensure_ascii=False).encode()

    def get(self, name: str) -> TocEntry | None:
        """The entry at `name` (any spelling of the path), None when there is none."""
        return self._by_path.get(clean_name(name))

    def chunks(self, name: str) -> list[TocEntry]:
        """A regular file's data entries in file order, the reg entry first; [] for an
        empty file; EstargzError when `name` is not a regular file."""
        path = clean_name(name)
        if path not in self._chunks:
            raise EstargzError(f"{name!r} is not a regular file in the TOC")
        return [c for c in self._chunks[path] if c.chunk_size]

    def span(self, chunk: TocEntry) -> tuple[int, int]:
        """[start, end) in the blob of the gzip member holding `chunk`: what a Range request
        fetches. The member may carry tar headers after the chunk (decompress_chunk
        ignores them)."""
        key = (chunk.path, chunk.chunk_offset)
        if chunk.type not in DATA_TYPES or key not in self._next or not chunk.offset:
            raise EstargzError(f"{chunk.name!r} at {chunk.chunk_offset} is not a chunk of this TOC")
        end = self._next[key]
        if end is None:
            raise EstargzError("the TOC's own offset is unknown, so its last chunk's end is too")
        if end <= chunk.offset:
            raise EstargzError(f"chunk of {chunk.name!r} at {chunk.chunk_offset}: offsets are not increasing")
        return chunk.offset, end

    def prefetch_names(self) -> list[str]:
        """Paths of the entries before the prefetch landmark (the files a workload needs
        at start); [] without a landmark or with the no-prefetch landmark."""
        names: list[str] = []
        for entry in self.entries:
            if entry.path == NO_PREFETCH_LANDMARK:
                return []
            if entry.path == PREFETCH_LANDMARK:
                return names
            if entry.type != "chunk" and entry.path not in names:
                names.append(entry.path)
        return []


def _entry_from_json(index: int, item: object) -> TocEntry:
    if not isinstance(item, dict):
        raise EstargzError(f"TOC entry {index} is not a JSON object")
    values: dict[str, Any] = {}
    for key, attr, kind in _JSON_FIELDS:
        if key not in item:
            continue
        value = item[key]
        if type(value) is not kind:  # bool is not an int here
            raise EstargzError(f"TOC entry {index}: field {key!r} must be {kind.__name__}, not {value!r}")
        if kind is int and value < 0:
            raise EstargzError(f"TOC entry {index}: field {key!r} is negative")
        values[attr] = value
    if "name" not in values and values.get("type") != "chunk":
        raise EstargzError(f"TOC entry {index}: field 'name' is missing")
    if values.get("type") not in ENTRY_TYPES:
        raise EstargzError(f"TOC entry {index}: field 'type' must be one of {', '.join(ENTRY_TYPES)}")
    xattrs = {}
    for key, value in values.get("xattrs", {}).items():
        try:
            xattrs[key] = base64.b64decode(value, validate=True)
        except (TypeError, ValueError):
            raise EstargzError(f"TOC entry {index}: field 'xattrs' value of {key!r} is not base64") from None
    values["xattrs"] = xattrs
    if values.get("mod_time"):
        _parse_time(values["mod_time"], values.get("name", ""))
    values.setdefault("name", "")
    return TocEntry(**values)


def _normalize(entries: list[TocEntry]) -> tuple[TocEntry, ...]:
    """Name chunks after their file, fill in data entries' chunk sizes and count links."""
    out: list[TocEntry] = []
    reg: TocEntry | None = None
    for entry in entries:
        if entry.type == "chunk":
            if reg is None:
                raise EstargzError("TOC has a chunk entry that follows no regular file")
            size = entry.chunk_size or reg.size - entry.chunk_offset
            entry = replace(entry, name=reg.name, chunk_size=size, num_link=0)
            if entry.chunk_offset + size > reg.size:
                raise EstargzError(f"chunk of {reg.name!r} at {entry.chunk_offset} ends past the file's size")
        elif entry.type == "reg":
            entry = reg = replace(entry, chunk_size=entry.chunk_size or entry.size)
        out.append(entry)
    links: dict[str, int] = {}
    for entry in out:
        if entry.type == "chunk":
            continue
        links[entry.path] = links.get(entry.path, 0) + (2 if entry.type == "dir" else 1)
        parent = posixpath.dirname(entry.path)
        if entry.type == "dir" and entry.path:
            links[parent] = links.get(parent, 0) + 1
        if entry.type == "hardlink":
            target = clean_name(entry.link_name)
            if target not in links:
                raise EstargzError(f"TOC entry {entry.name!r} links to {entry.link_name!r}, not before it")
            links[target] += 1
    return tuple(e if e.type == "chunk" else replace(e, num_link=links[_link_source(e)]) for e in out)


def _link_source(entry: TocEntry) -> str:
    """The path whose inode `entry` names: a hard link's target, else its own."""
    return clean_name(entry.link_name) if entry.type == "hardlink" else entry.path


def footer(toc_offset: int) -> bytes:
    """The 51-byte footer: an empty gzip member whose Extra field is SG, 22, "%016xSTARGZ"."""
    subfield = f"{toc_offset:016x}".encode() + _FOOTER_MAGIC
    extra = b"SG" + len(subfield).to_bytes(2, "little") + subfield
    head = b"\x1f\x8b\x08\x04" + bytes(4) + b"\x00\xff" + len(extra).to_bytes(2, "little") + extra
    return head + b"\x01\x00\x00\xff\xff" + bytes(8)


def parse_footer(data: bytes) -> int:
    """The TOC offset a footer holds; EstargzError for anything that is not exactly one."""
    if len(data) != FOOTER_SIZE:
        raise EstargzError(f"an eStargz footer is {FOOTER_SIZE} bytes, not {len(data)}")
    if data[:4] != b"\x1f\x8b\x08\x04":
        raise EstargzError("footer is not a gzip header with (only) an Extra field")
    if data[10:16] != b"\x1a\x00SG\x16\x00":
        raise EstargzError("footer's Extra field is not the eStargz SG subfield of 22 bytes")
    hex_offset, magic = data[16:32], data[32:38]
    if magic != _FOOTER_MAGIC:
        raise EstargzError("footer's Extra subfield does not end in STARGZ")
    if data[38:] != b"\x01\x00\x00\xff\xff" + bytes(8):
        raise EstargzError("footer is not an empty gzip member")
    if not all(c in b"0123456789abcdefABCDEF" for c in hex_offset):
        raise EstargzError(f"footer's TOC offset {hex_offset!r} is not hexadecimal")
    return int(hex_offset, 16)


def _inflate_member(raw: bytes, limit: int, what: str) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the gzip member at the start of `raw`, and whether the
    member ended inside `raw`."""
    inflater = zlib.decompressobj(31)
    try:
        data = inflater.decompress(raw, limit)
    except zlib.error as e:
        raise EstargzError(f"{what} is not valid gzip: {e}") from None
    return data, inflater.eof


def read_toc(read_range: Callable[[int, int], bytes], blob_size: int) -> tuple[Toc, str]:
    """Read a blob's footer, then its TOC member, through `read_range(start, end)` (two
    reads, [start, end) each); return the TOC and its digest, the sha256 of the TOC JSON,
    for the caller to check against the layer's TOC_DIGEST_ANNOTATION."""
    if blob_size < FOOTER_SIZE:
        raise EstargzError(f"a blob of {blob_size} bytes is too small to be eStargz")
    end = blob_size - FOOTER_SIZE
    toc_offset = parse_footer(_exact(read_range, end, blob_size))
    if toc_offset >= end:
        raise EstargzError(f"footer's TOC offset {toc_offset} is past the blob's payload ({end} bytes)")
    raw = _exact(read_range, toc_offset, end)
    tar_bytes, ended = _inflate_member(raw, _MAX_TOC_JSON + 3 * BLOCK, "the TOC member")
    if not ended:
        raise EstargzError("the TOC gzip member does not end before the footer")
    try:
        reader = TarReader(io.BytesIO(tar_bytes))
        first = next(reader.entries(), None)
        if first is None or first.type != REG or clean_name(first.name) != TOC_NAME:
            raise EstargzError(f"the TOC member's first tar entry is not {TOC_NAME}")
        data = b"".join(reader.read_chunks(first.size))
    except UnsafeArchive as e:
        raise EstargzError(f"the TOC member is not a valid tar: {e}") from None
    return Toc.from_json(data, toc_offset=toc_offset), "sha256:" + hashlib.sha256(data).hexdigest()


def _exact(read_range: Callable[[int, int], bytes], start: int, end: int) -> bytes:
    data = read_range(start, end)
    if len(data) != end - start:
        raise EstargzError(f"range [{start}, {end}) of the blob gave {len(data)} bytes, not {end - start}")
    return data


def decompress_chunk(raw: bytes, chunk: TocEntry) -> bytes:
    """The chunk's file bytes from `raw` (its `span`), verified against its chunkDigest;
    ChunkDigestMismatch (and no bytes) when they differ or `raw` is corrupt."""
    if not chunk.chunk_digest.startswith("sha256:"):
        raise EstargzError(f"chunk of {chunk.name!r} at {chunk.chunk_offset} has no sha256 chunkDigest")
    want = chunk.inner_offset + chunk.chunk_size
    try:
        data, _ = _inflate_member(raw, want, "chunk")
    except EstargzError as e:
        raise ChunkDigestMismatch(chunk.name, chunk.chunk_offset, chunk.chunk_digest, str(e)) from None
    data = data[chunk.inner_offset :]
    if len(data) != chunk.chunk_size:
        raise ChunkDigestMismatch(chunk.name, chunk.chunk_offset, chunk.chunk_digest,
                                  f"inflates to {len(data)} bytes, not {chunk.chunk_size}")
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != chunk.chunk_digest:
        raise ChunkDigestMismatch(chunk.name, chunk.chunk_offset, chunk.chunk_digest, f"got {actual}")
    return data


@dataclass(frozen=True)
class EstargzLayer:
    """What `write_estargz` made: the blob's digest and size, the diff id and size of the
    tar a plain gzip reader inflates from it (TOC entry included), and the TOC's digest."""

    digest: str
    size: int
    diff_id: str
    toc_digest: str
    uncompressed_size: int


class _Members:
    """Writes gzip members to `out` one after another, counting and hashing both sides."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.offset = 0
        self.uncompressed = 0
        self.blob_hash = hashlib.sha256()
        self.diff_hash = hashlib.sha256()
        self._deflate: Any = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._deflate is None:
            self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 31)
        self.diff_hash.update(data)
        self.uncompressed += len(data)
        self.emit(self._deflate.compress(data))

    def close_member(self) -> None:
        if self._deflate is not None:
            self.emit(self._deflate.flush())
            self._deflate = None

    def emit(self, raw: bytes) -> None:
        if raw:
            self.out.write(raw)
            self.blob_hash.update(raw)
            self.offset += len(raw)


# an entry and what yields its data (None for entries without data)
_Item = tuple[Entry, Callable[[], Iterator[bytes]] | None]


def write_estargz(tar_in: IO[bytes], out: IO[bytes], *, chunk_size: int = 4 << 20,
                  prioritized: Sequence[str] = ()) -> EstargzLayer:
    """Convert the uncompressed layer tar `tar_in` to an eStargz blob written to `out`.

    Entries keep their order, except that `prioritized` files (with their parent
    directories and hard-link targets) come first, in the given order, followed by the
    prefetch landmark; with none, the no-prefetch landmark comes first. An input's own
    TOC or landmark entries are dropped (a layer made eStargz twice). EstargzError for a
    prioritized name the layer lacks or a tar it cannot read.
    """
    if chunk_size <= 0:
        raise EstargzError(f"chunk size must be positive, not {chunk_size}")
    members = _Members(out)
    toc: list[TocEntry] = []
    try:
        if prioritized:
            with tempfile.TemporaryFile() as spool:
                shutil.copyfileobj(tar_in, spool, 1 << 20)
                for entry, data in _prioritized(spool, prioritized):
                    _append(members, toc, entry, data, chunk_size)
        else:
            _append(members, toc, _landmark(NO_PREFETCH_LANDMARK), lambda: iter((_LANDMARK_CONTENTS,)), chunk_size)
            reader = TarReader(tar_in)
            for entry in reader.entries():
                if clean_name(entry.name) not in _RESERVED:
                    _append(members, toc, entry, _reader_data(reader, entry), chunk_size)
    except UnsafeArchive as e:
        raise EstargzError(f"cannot make eStargz of this layer: {e}") from None
    members.close_member()
    toc_offset = members.offset
    toc_json = Toc(toc, toc_offset=toc_offset).to_json()
    info = tarfile.TarInfo(TOC_NAME)
    info.size, info.mode = len(toc_json), 0o644
    members.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    members.write(toc_json + bytes(padded(len(toc_json)) - len(toc_json)))
    members.write(bytes(2 * BLOCK))  # the end-of-archive marker
    members.close_member()
    members.emit(footer(toc_offset))
    layer = EstargzLayer(
        digest="sha256:" + members.blob_hash.hexdigest(),
        size=members.offset,
        diff_id="sha256:" + members.diff_hash.hexdigest(),
        toc_digest="sha256:" + hashlib.sha256(toc_json).hexdigest(),
        uncompressed_size=members.uncompressed,
    )
    log.debug("eStargz blob %s: %d bytes, %d TOC entries", layer.digest, layer.size, len(toc))
    return layer


def _reader_data(reader: TarReader, entry: Entry) -> Callable[[], Iterator[bytes]] | None:
    return (lambda: reader.read_chunks(entry.size)) if entry.type == REG else None


def _landmark(name: str) -> Entry:
    return Entry(name, REG, len(_LANDMARK_CONTENTS), 0o644, 0, 0, 0, 0)


def _prioritized(spool: IO[bytes], prioritized: Sequence[str]) -> Iterator[_Item]:
    """The spooled tar's entries with the prioritized ones first, then the prefetch
    landmark, then the rest (a later duplicate of a name replaces the earlier one)."""
    spool.seek(0)
    reader = TarReader(spool)
    found: dict[str, tuple[Entry, int]] = {}
    for entry in reader.entries():
        path = clean_name(entry.name)
        if path not in _RESERVED:
            found.pop(path, None)  # re-inserted at the end: the later position wins
            found[path] = (entry, reader.offset)

    def data(entry: Entry, start: int) -> Callable[[], Iterator[bytes]] | None:
        def chunks() -> Iterator[bytes]:
            spool.seek(start)
            left = entry.size
            while left:
                piece = spool.read(min(left, 1 << 20))
                if not piece:
                    raise EstargzError(f"the layer tar ended inside {entry.name!r}")
                left -= len(piece)
                yield piece
        return chunks if entry.type == REG else None

    picked: dict[str, None] = {}

    def pick(path: str) -> None:
        """`path` after its parent directories (those the tar has) and hard-link target."""
        if path in picked:
            return
        if path:
            pick(posixpath.dirname(path))
        if path not in found:  # a parent directory the tar leaves implicit
            return
        entry, _ = found[path]
        if entry.type == LNK:
            target = clean_name(entry.linkname)
            if target not in found:
                raise EstargzError(f"prioritized {path!r} is a hard link to {entry.linkname!r}, which the layer lacks")
            pick(target)
        picked[path] = None

    for name in prioritized:
        path = clean_name(name)
        if path not in found:
            raise EstargzError(f"prioritized file {name!r} is not in the layer")
        pick(path)
    for path in picked:
        yield found[path][0], data(*found[path])
    yield _landmark(PREFETCH_LANDMARK), lambda: iter((_LANDMARK_CONTENTS,))
    for path, (entry, start) in found.items():
        if path not in picked:
            yield entry, data(entry, start)


def _append(members: _Members, toc: list[TocEntry], entry: Entry,
            data: Callable[[], Iterator[bytes]] | None, chunk_size: int) -> None:
    """Write one tar entry: its header into the open member, then each chunk of a regular
    file's data at the start of a new member, recording TOC entries as it goes."""
    info = tarfile.TarInfo(entry.name)
    info.type, info.mode, info.uid, info.gid = entry.type, entry.mode, entry.uid, entry.gid
    seconds, nanos = divmod(entry.mtime_ns, 1_000_000_000)
    info.mtime = seconds
    if nanos:
        info.pax_headers["mtime"] = f"{seconds}.{nanos:09d}"
    info.linkname, info.devmajor, info.devminor = entry.linkname, entry.devmajor, entry.devminor
    info.size = entry.size if entry.type == REG else 0
    info.uname = info.gname = ""
    for key in sorted(entry.xattrs):
        info.pax_headers["SCHILY.xattr." + key] = entry.xattrs[key].decode("utf-8", "surrogateescape")
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    name = header_name(info)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise EstargzError(f"tar name {entry.name!r} is not UTF-8, which a JSON TOC cannot hold") from None
    members.write(header)
    base = TocEntry(
        name=name, type=_TAR_TYPES[entry.type], size=info.size, mod_time=_format_time(entry.mtime_ns),
        link_name=entry.linkname, mode=entry.mode, uid=entry.uid, gid=entry.gid,
        dev_major=entry.devmajor if entry.type in (CHR, BLK) else 0,
        dev_minor=entry.devminor if entry.type in (CHR, BLK) else 0, xattrs=dict(entry.xattrs),
    )
    if data is None or not info.size:
        if data is not None:
            for _ in data():
                pass
        toc.append(replace(base, digest="sha256:" + hashlib.sha256(b"").hexdigest()) if entry.type == REG else base)
        return
    file_hash = hashlib.sha256()
    first = len(toc)
    current = base
    chunk_hash = hashlib.sha256()
    written = 0

    def start_chunk(at: int) -> None:
        members.close_member()
        toc.append(replace(current, offset=members.offset, chunk_offset=at,
                           chunk_size=chunk_size if info.size - at > chunk_size else 0))

    def end_chunk() -> None:
        toc[-1] = replace(toc[-1], chunk_digest="sha256:" + chunk_hash.hexdigest())

    start_chunk(0)
    for piece in data():
        view = memoryview(piece)
        while view:
            if written and written % chunk_size == 0 and len(toc) - first == written // chunk_size:
                end_chunk()
                chunk_hash = hashlib.sha256()
                current = TocEntry(name=name, type="chunk")
                start_chunk(written)
            take = min(len(view), chunk_size - written % chunk_size)
            part = view[:take]
            members.write(bytes(part))
            file_hash.update(part)
            chunk_hash.update(part)
            written += take
            view = view[take:]
    if written != info.size:
        raise EstargzError(f"{entry.name!r}: the layer tar gave {written} bytes, not {info.size}")
    end_chunk()
    members.write(bytes(padded(info.size) - info.size))
    toc[first] = replace(toc[first], digest="sha256:" + file_hash.hexdigest())


def header_name(info: tarfile.TarInfo) -> str:
    """The name a tar header written from `info` carries (tarfile adds "/" to directories)."""
    return info.name + "/" if info.type == tarfile.DIRTYPE and not info.name.endswith("/") else info.name

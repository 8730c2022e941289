"""Byte-exact layer streams: digest checking on the way in, tar-split to reproduce on the way out.

An image's id is the digest of its config, and the config lists the digest of every
layer tar (the diff ids). `save` must therefore write each layer back *byte for byte*, or
the saved image would no longer verify. Like Docker's tar-split, we do not keep a copy
of the tar: while a layer is applied we record the raw tar headers and padding and, for
each file's data, only its name and length. On export the headers are replayed and the
data is read back from the mounted layer; the result is checked against the diff id.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import IO

import zstandard

from ..errors import InvalidArchive

BLOCK = 512
CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# tarfile's rule: these types carry no data whatever their size field says.
_NO_DATA_TYPES = set(b"123456")
_META_TYPES = set(b"xgLK")
_REG_TYPES = set(b"07\x00")


class HashingReader(io.RawIOBase):
    """Reads through `inner`, hashing (sha256) and counting every byte that passes."""

    def __init__(self, inner: IO[bytes], on_bytes: Callable[[int], None] | None = None) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.count = 0
        self.on_bytes = on_bytes
        self.taps: list[Callable[[bytes], None]] = []

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        data = self.inner.read(len(buf))
        n = len(data)
        buf[:n] = data
        if n:
            self._seen(data)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size) if size is not None and size >= 0 else self.inner.read()
        if data:
            self._seen(data)
        return data

    def _seen(self, data: bytes) -> None:
        self.hash.update(data)
        self.count += len(data)
        for tap in self.taps:
            tap(data)
        if self.on_bytes is not None:
            self.on_bytes(len(data))

    def drain(self) -> None:
        """Read to the end, so the digest covers all of the stream (tar readers stop early)."""
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read from its front put back."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def sniff(stream: IO[bytes]) -> tuple[str, IO[bytes]]:
    """The compression of a layer blob ("none", "gzip", "zstd") and the blob, head put back."""
    head = b""
    while len(head) < 4:
        more = stream.read(4 - len(head))
        if not more:
            break
        head += more
    return compression_of(head), io.BufferedReader(_Prefixed(head, stream), CHUNK)


def decompressor(kind: str, blob: IO[bytes]) -> IO[bytes]:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=blob, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True)  # type: ignore[return-value]
    return blob


def decompressed(stream: IO[bytes]) -> IO[bytes]:
    """The uncompressed tar inside a layer blob: plain, gzip or zstd, detected by magic."""
    return decompressor(*sniff(stream))


def compression_of(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


# -- tar-split ---------------------------------------------------------------------------

_RAW = b"R"
_FILE = b"F"


def _tar_number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        value = field[0] & 0x3F
        for b in field[1:]:
            value = (value << 8) | b
        return -value if field[0] & 0x40 else value
    text = field.split(b"\x00", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


class TarSplitter:
    """Fed the bytes of a tar stream in order; writes the tar-split record stream.

    Records: R <u32 len> <raw bytes> (headers, metadata payloads, padding, trailer) and
    F <u16 name len> <name> <u64 size> (file data to read back from the layer).
    """

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self._buf = bytearray()
        self._need = BLOCK  # bytes wanted before the next step
        self._state = "header"
        self._raw = bytearray()
        self._file_left = 0
        self._pad = 0
        self._meta_type = 0
        self._pax: dict[bytes, bytes] = {}
        self._longname: bytes | None = None
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        view = memoryview(data)
        while view:
            if self._state == "filedata":
                n = min(self._file_left, len(view))
                self._file_left -= n
                view = view[n:]
                if self._file_left == 0:
                    self._state, self._need = "raw", self._pad
                    if self._need == 0:
                        self._state, self._need = "header", BLOCK
                continue
            if self._state == "rest":
                self._raw += view
                return
            n = min(self._need - len(self._buf), len(view))
            self._buf += view[:n]
            view = view[n:]
            if len(self._buf) == self._need:
                chunk = bytes(self._buf)
                self._buf.clear()
                self._step(chunk)

    def _step(self, chunk: bytes) -> None:
        self._raw += chunk
        if self._state == "raw":
            self._state, self._need = "header", BLOCK
        elif self._state == "meta":
            self._take_meta(chunk)
            self._state, self._need = "header", BLOCK
        else:
            self._take_header(chunk)

    def _take_header(self, block: bytes) -> None:
        if block == bytes(BLOCK):
            return  # end-of-archive blocks; anything after them is raw too
        try:
            size = _tar_number(block[124:136])
        except ValueError:
            self._state = "rest"  # not a tar header we understand: keep the rest verbatim
            return
        kind = block[156]
        if b"size" in self._pax and kind not in _META_TYPES:
            size = int(self._pax[b"size"])
        padded = -(-size // BLOCK) * BLOCK
        if kind in _META_TYPES:
            self._meta_type = kind
            self._state, self._need = ("meta", padded) if padded else ("header", BLOCK)
            return
        name = self._entry_name(block)
        # PAX sparse files store a map before the data: the payload is not the file's bytes
        sparse = any(key.startswith(b"GNU.sparse") for key in self._pax)
        self._pax, self._longname = {}, None
        if kind in _NO_DATA_TYPES or size == 0:
            return
        if kind not in _REG_TYPES or sparse:  # unknown or sparse: keep the payload verbatim
            self._state, self._need = "raw", padded
            return
        self._flush_raw()
        encoded = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
        self.out.write(_FILE + struct.pack(">H", len(encoded)) + encoded + struct.pack(">Q", size))
        self._state, self._file_left, self._pad = "filedata", size, padded - size

    def _take_meta(self, payload: bytes) -> None:
        if self._meta_type == ord("x"):
            self._pax = _pax_records(payload)
        elif self._meta_type == ord("L"):
            self._longname = payload.split(b"\x00", 1)[0]

    def _entry_name(self, block: bytes) -> bytes:
        if b"path" in self._pax:
            return self._pax[b"path"]
        if self._longname is not None:
            return self._longname
        name = block[0:100].split(b"\x00", 1)[0]
        if block[257:265] == b"ustar\x0000":
            prefix = block[345:500].split(b"\x00", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        return name

    def _flush_raw(self) -> None:
        if self._raw:
            self.out.write(_RAW + struct.pack(">I", len(self._raw)) + bytes(self._raw))
            self._raw.clear()

    def close(self) -> None:
        if self._buf:
            self._raw += self._buf
            self._buf.clear()
        self._flush_raw()


def write_tarsplit(path: str) -> tuple[IO[bytes], Callable[[], None]]:
    """Open `path`.tmp for a tar-split; the returned `commit` renames it into place."""
    tmp = path + ".tmp"
    fh = gzip.open(tmp, "wb", compresslevel=1)

    def commit() -> None:
        fh.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    return fh, commit


def _safe_open(root: str, name: bytes) -> int:
    """Open `name` under `root` without following any symlink (the layer is not trusted)."""
    parts = [p for p in os.fsdecode(name).split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidArchive(f"tar-split names an unsafe path {name!r}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise OSError(f"{name!r} is not a regular file")
    return leaf


def reassemble(tarsplit_path: str, layer_dir: str) -> Iterator[bytes]:
    """The layer's original tar, chunk by chunk: replayed headers + file data from the layer."""
    with gzip.open(tarsplit_path, "rb") as rec:
        while True:
            tag = rec.read(1)
            if not tag:
                return
            if tag == _RAW:
                (n,) = struct.unpack(">I", rec.read(4))
                yield rec.read(n)
            elif tag == _FILE:
                (n,) = struct.unpack(">H", rec.read(2))
                name = rec.read(n)
                (size,) = struct.unpack(">Q", rec.read(8))
                yield from _file_data(layer_dir, name, size)
            else:
                raise zlib.error(f"corrupt tar-split {tarsplit_path}")


def _file_data(layer_dir: str, name: bytes, size: int) -> Iterator[bytes]:
    fd = _safe_open(layer_dir, name)
    try:
        left = size
        while left:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                raise OSError(f"{name!r} is shorter in the layer than in its tar ({size} bytes)")
            left -= len(data)
            yield data
    finally:
        os.close(fd)


def tarsplit_size(tarsplit_path: str) -> int:
    """Length of the tar `reassemble` will produce (a tar header needs it up front)."""
    total = 0
    with gzip.open(tarsplit_path, "rb") as rec:
        while True:
            tag = rec.read(1)
            if not tag:
                return total
            if tag == _RAW:
                (n,) = struct.unpack(">I", rec.read(4))
                rec.seek(n, io.SEEK_CUR)
                total += n
            else:
                (n,) = struct.unpack(">H", rec.read(2))
                rec.seek(n, io.SEEK_CUR)
                (size,) = struct.unpack(">Q", rec.read(8))
                total += size


class IterStream(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        while not self.left:
            try:
                self.left = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buf), len(self.left))
        buf[:n] = self.left[:n]
        self.left = self.left[n:]
        return n


def stream_of(chunks: Iterator[bytes]) -> IO[bytes]:
    """A buffered readable stream over byte chunks (what tarfile.addfile wants)."""
    return io.BufferedReader(IterStream(chunks), CHUNK)

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
import queue
import stat
import struct
import threading
import types
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from graphdrivers.archive.export import read_exactly
from graphdrivers.archive.resolve import open_in_root
from graphdrivers.archive.tarread import BLOCK, REG, Extension, HeaderDecoder, padded
from graphdrivers.errors import UnsafeArchive

CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


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


class ReadAhead(io.RawIOBase):
    """Reads `inner` to its end in a thread, up to `depth` chunks ahead of the reader.

    What pulls the bytes of a layer -- the socket or file, the blob's sha256, gzip or zstd,
    the tar's sha256, the tar-split recorder -- then runs beside the apply that consumes
    them: socket reads, hashing and decompression release the GIL, so a pull or load uses
    a second core. An error in the thread is raised to the reader at the point it reached;
    `close` stops the thread (the reader failed or stopped early) and waits for it.
    """

    def __init__(self, inner: IO[bytes], depth: int = 8) -> None:
        self.inner = inner
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stopped = threading.Event()
        self._left = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._pump, name="layer-read-ahead", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while not self._stopped.is_set():
                chunk = self.inner.read(CHUNK)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stopped.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes:
        """The next chunk from the thread (b"" at the end); its error, raised here."""
        if self._done:
            return b""
        item = self._chunks.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._done = not item
        return item

    def readinto(self, buf) -> int:  # type: ignore[override]
        if not self._left:
            self._left = memoryview(self._next())
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if not self._left:
            item = self._next()
            if len(item) <= size:  # a whole chunk: hand it over without a copy
                return item
            self._left = memoryview(item)
        n = min(size, len(self._left))
        data = bytes(self._left[:n])
        self._left = self._left[n:]
        return data

    def close(self) -> None:
        if not self.closed:
            self._stopped.set()
            self._thread.join()
        super().close()


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


def zstd() -> types.ModuleType:
    """zstandard, imported on first use: most commands (`strata run`) never need it."""
    import zstandard

    return zstandard


def decompressor(kind: str, blob: IO[bytes]) -> IO[bytes]:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=blob, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        return zstd().ZstdDecompressor().stream_reader(blob, read_across_frames=True)  # type: ignore[return-value]
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


class TarSplitter:
    """Fed the bytes of a tar stream in order; writes the tar-split record stream.

    Records: R <u32 len> <raw bytes> (headers, metadata payloads, padding, trailer) and
    F <u16 name len> <name> <u64 size> (file data to read back from the layer).

    Headers are read by graphdrivers' tar reader (`HeaderDecoder`), the same one that
    applies the layer, so both agree where each file's data is. The splitter only
    observes: from a header it cannot accept on (the end-of-archive block, or anything the
    reader refuses, which fails the apply with the reader's own error), the rest of the
    stream is kept verbatim, so reassembly is byte-exact whatever the stream holds.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self._decoder = HeaderDecoder()
        self._buf = bytearray()
        self._need = BLOCK  # bytes wanted before the next step
        self._state = "header"
        self._raw = bytearray()
        self._file_left = 0
        self._pad = 0
        self._extension: Extension | None = None
        self.total = 0
        self._offset = 0  # stream position of the next step (for the reader's messages)

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        view = memoryview(data)
        while view:
            if self._state == "filedata":
                n = min(self._file_left, len(view))
                self._file_left -= n
                self._offset += n
                view = view[n:]
                if self._file_left == 0:
                    self._expect("raw", self._pad)
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

    def _expect(self, state: str, need: int) -> None:
        """Wait for `need` bytes in `state`; nothing to wait for means the next header."""
        self._state, self._need = (state, need) if need else ("header", BLOCK)

    def _step(self, chunk: bytes) -> None:
        self._raw += chunk
        start, self._offset = self._offset, self._offset + len(chunk)
        try:
            if self._state == "raw":
                self._expect("header", BLOCK)
            elif self._state == "meta":
                assert self._extension is not None
                self._decoder.extend(self._extension, chunk[: self._extension.size])
                self._expect("header", BLOCK)
            else:
                self._take_header(chunk, start)
        except UnsafeArchive:
            self._state = "rest"  # the applying reader refuses this too and says why

    def _take_header(self, block: bytes, start: int) -> None:
        item = self._decoder.header(block, start)
        if item is None:
            self._state = "rest"  # end of archive: the trailer and any padding stay verbatim
        elif isinstance(item, Extension):
            self._extension = item
            if item.size:
                self._expect("meta", padded(item.size))
            else:
                self._decoder.extend(item, b"")
        elif item.type == REG and item.size:
            self._flush_raw()
            name = item.name.encode("utf-8", "surrogateescape")
            self.out.write(_FILE + struct.pack(">H", len(name)) + name + struct.pack(">Q", item.size))
            self._state, self._file_left, self._pad = "filedata", item.size, padded(item.size) - item.size

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
    fd = open_in_root(layer_dir, os.fsdecode(name))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{name!r} is not a regular file in the layer")
        yield from read_exactly(fd, size, os.fsdecode(name))
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

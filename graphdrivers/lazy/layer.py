"""One lazy layer: its state directory, and fetching its files into its branch.

A lazy layer is an ordinary layer directory (its branch) whose regular files have the
right names, modes, owners, times and sizes but holes for data, plus a state directory:

  source.json, auth   where the blob is (`source.BlobSource`; auth is 0600)
  toc.json            the eStargz TOC, verified against the layer's annotation at pull
  chunks              one byte per chunk of the TOC (0: missing, 1: verified and stored)
  blob                a sparse copy of the blob: every fetched range at its offset
  state.json          {"state": "lazy" | "complete" | "bad", "reason": ...}
  lock                per-file locks (OFD byte-range locks at the file's index), so several
                      processes serving the layer fetch each chunk once

A chunk is fetched with one Range request, decompressed and checked against its TOC
digest *before* it is written into the branch file and marked in `chunks`; a reader is
never given bytes of a chunk that is not marked (callers ask `ensure` first). A process
killed mid-fetch leaves at most an unmarked chunk, fetched again by the next reader.
When every chunk is marked, `complete()` fetches the remaining ranges (tar headers) so
the whole blob is local, checks the blob digest and the diff id, and only then writes
`complete`; a mismatch writes `bad` (reads then fail with EIO), never `complete`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import struct
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, NoReturn

from ..archive import estargz
from ..archive.resolve import open_in_root
from ..errors import EstargzError
from .source import BlobSource, FetchError, RangeReader

log = logging.getLogger(__name__)

TOC_FILE = "toc.json"
MAP_FILE = "chunks"
BLOB_FILE = "blob"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
ERROR_FILE = "last-error"

LAZY, COMPLETE, BAD = "lazy", "complete", "bad"
DEFAULT_TIMEOUT = 5.0
BACKGROUND_IDLE = 1.0  # seconds without reads waiting on a lazy layer before the background fetches more
_LAYER_LOCK = 1 << 40  # the byte locked while completing (file locks use their index)
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux (l_type, l_whence, l_start, l_len, l_pid)


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the `chunks` map
    entry: estargz.TocEntry  # the reg or chunk entry
    offset: int  # where its data starts in the file
    size: int  # bytes of file data
    span: tuple[int, int]  # its gzip member's byte range in the blob


@dataclass(frozen=True)
class File:
    index: int  # the file's lock byte
    name: str  # the name holding the data (a hard link's target)
    size: int
    chunks: tuple[Chunk, ...]


class Activity:
    """When a reader last waited on a lazy layer: background fetching of files nobody
    asked for waits until readers have been quiet for a while, so it does not compete
    with the reads a starting container blocks on (Slacker: a container reads a small
    part of its image at start, in a burst)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()

    def wait_idle(self, stop: threading.Event, idle: float = BACKGROUND_IDLE) -> None:
        while not stop.is_set():
            left = self.last + idle - time.monotonic()
            if left <= 0:
                return
            stop.wait(left)


def read_state(directory: str) -> dict[str, str]:
    try:
        with open(os.path.join(directory, STATE_FILE), "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return {"state": BAD, "reason": "the lazy layer's state is missing"}


def write_state(directory: str, state: str, reason: str = "") -> None:
    _atomic(os.path.join(directory, STATE_FILE), json.dumps({"state": state, "reason": reason}).encode())


def _atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class LazyLayer:
    """A lazy layer's state directory and its branch: fetch on demand, in the background, completely.

    Thread-safe: the FUSE process reads on its request loop while a prefetch thread
    fetches; each thread gets its own HTTP session, and per-file locks are OFD locks (one
    open file description per holder), which exclude threads and processes alike."""

    def __init__(self, directory: str, branch: str, *, timeout: float = DEFAULT_TIMEOUT, layer_id: str = "") -> None:
        self.dir = directory
        self.branch = branch
        self.timeout = timeout
        self.layer_id = layer_id or os.path.basename(directory)
        self.source = BlobSource.load(directory)
        with open(os.path.join(directory, TOC_FILE), "rb") as f:
            self.toc = estargz.Toc.from_json(f.read(), toc_offset=self.source.toc_offset)
        self.files, self.chunks = _index(self.toc)
        self._done: set[str] = set()  # files seen complete (a file never becomes incomplete)
        self._terminal: dict[str, str] | None = None  # complete or bad: final
        self._local = threading.local()

    def close(self) -> None:
        """Close this thread's HTTP session (the others end with their threads)."""
        reader = getattr(self._local, "reader", None)
        if reader is not None:
            reader.close()

    # -- facts -------------------------------------------------------------------------

    def state(self) -> dict[str, str]:
        if self._terminal is not None:
            return self._terminal
        current = read_state(self.dir)
        if current["state"] != LAZY:
            self._terminal = current
        return current

    def _marks(self) -> bytes:
        with open(os.path.join(self.dir, MAP_FILE), "rb", buffering=0) as f:
            return f.read()

    def _mark(self, chunk: Chunk) -> None:
        fd = os.open(os.path.join(self.dir, MAP_FILE), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, b"\1", chunk.index)
        finally:
            os.close(fd)

    def file(self, name: str) -> File | None:
        """The data-holding file behind union name `name`, None when nothing is to fetch."""
        return self.files.get(estargz.clean_name(name))

    def needs_fetch(self, name: str) -> bool:
        """Whether `name` is a regular file not all of whose chunks have arrived."""
        f = self.file(name)
        if f is None or f.name in self._done:
            return False
        marks = self._marks()
        if all(marks[c.index] for c in f.chunks):
            self._done.add(f.name)
            return False
        return True

    def check(self, name: str) -> None:
        """EIO for any file of a bad layer: its data cannot be trusted."""
        current = self.state()
        if current["state"] == BAD and self.file(name) is not None:
            raise OSError(errno.EIO, f"layer {self.layer_id[:12]} is bad: {current['reason']}")

    def status(self) -> dict[str, Any]:
        marks = self._marks()
        present = {c.index for c in self.chunks if marks[c.index]}
        targets = {f.name: f for f in self.files.values()}
        files_done = sum(1 for f in targets.values() if all(c.index in present for c in f.chunks))
        current = self.state()
        fetched = self.source.size - self.source.toc_offset + sum(c.span[1] - c.span[0] for c in self.chunks
                                                                if c.index in present)
        if current["state"] == COMPLETE:
            fetched = self.source.size
        return {
            "State": current["state"],
            "Reason": current.get("reason", ""),
            "FilesFetched": files_done,
            "FilesTotal": len(targets),
            "BytesFetched": fetched,
            "BytesTotal": self.source.size,
            "LastError": _read_text(os.path.join(self.dir, ERROR_FILE)),
        }

    # -- fetching ----------------------------------------------------------------------

    def _reader(self) -> RangeReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = RangeReader(self.source, self.timeout)
        return reader

    def ensure(self, name: str, offset: int = 0, size: int | None = None) -> None:
        """Make bytes [offset, offset + size) of `name` (all of it by default) readable in
        the branch: fetch, verify and store the chunks they need. OSError(EIO) on failure
        (logged with the layer and the file); the next call tries again, unless the
        layer went bad."""
        f = self.file(name)
        if f is None or f.name in self._done:
            return
        self.check(name)
        end = f.size if size is None else min(f.size, offset + size)
        wanted = [c for c in f.chunks if c.offset < end and c.offset + c.size > offset]
        marks = self._marks()
        if all(marks[c.index] for c in wanted):  # also: nothing wanted (a read at or past the end)
            return
        with self._file_lock(f.index):
            marks = self._marks()  # another holder may have fetched them meanwhile
            missing = [c for c in wanted if not marks[c.index]]
            if missing:
                self._fetch(f, missing)
        if all(self._marks()[c.index] for c in f.chunks):
            self._done.add(f.name)

    def _fetch(self, f: File, chunks: list[Chunk]) -> None:
        try:
            fd = open_in_root(self.branch, f.name, os.O_WRONLY)
        except OSError as exc:
            self._failed(f, f"cannot open it in the branch: {exc}")
        try:
            before = os.fstat(fd)
            for chunk in chunks:
                try:
                    raw = self._reader().read(*chunk.span)
                except FetchError as exc:
                    self._failed(f, exc.strerror or str(exc))
                try:
                    data = estargz.decompress_chunk(raw, chunk.entry)
                except EstargzError as exc:  # ChunkDigestMismatch, or a member that does not inflate
                    self.mark_bad(f"chunk at {chunk.offset} of {f.name} does not match the TOC: {exc}")
                    raise OSError(errno.EIO, f"layer {self.layer_id[:12]}: {f.name}: bad chunk") from None
                os.pwrite(fd, data, chunk.offset)
                self._store_raw(raw, chunk.span[0])
                self._mark(chunk)  # only now may a reader see it
            os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))  # writing data is no change
        finally:
            os.close(fd)

    def _store_raw(self, raw: bytes, offset: int) -> None:
        fd = os.open(os.path.join(self.dir, BLOB_FILE), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, raw, offset)
        finally:
            os.close(fd)

    def _failed(self, f: File, reason: str) -> NoReturn:
        message = f"layer {self.layer_id[:12]}: cannot fetch {f.name}: {reason}"
        log.error("%s", message)
        with contextlib.suppress(OSError):
            _atomic(os.path.join(self.dir, ERROR_FILE), message.encode())
        raise OSError(errno.EIO, message)

    def mark_bad(self, reason: str) -> None:
        log.error("lazy layer %s is bad: %s", self.layer_id[:12], reason)
        write_state(self.dir, BAD, reason)
        self._terminal = None

    @contextlib.contextmanager
    def _file_lock(self, index: int) -> Iterator[None]:
        fd = os.open(os.path.join(self.dir, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, index, 1, 0))
            yield
        finally:
            os.close(fd)  # closing the description releases its lock

    # -- in the background -------------------------------------------------------------

    def landmarked(self) -> list[str]:
        """Files the TOC marks as needed at start (before the prefetch landmark)."""
        wanted = {self.files[n].name for n in map(estargz.clean_name, self.toc.prefetch_names()) if n in self.files}
        return [n for n in self._names() if n in wanted]

    def rest(self) -> list[str]:
        """Every other file, in TOC order."""
        first = set(self.landmarked())
        return [n for n in self._names() if n not in first]

    def _names(self) -> list[str]:
        return list(dict.fromkeys(f.name for f in self.files.values()))

    def fetch_files(self, names: list[str], stop: threading.Event, *, pause: Callable[[], None] | None = None,
                    retry: float = 1.0) -> None:
        """Fetch `names` (calling `pause` before each); a fetch that fails is tried again
        after `retry` seconds, until `stop` is set or the layer is no longer lazy."""
        pending = names
        while pending and not stop.is_set():
            failed = []
            for name in pending:
                if pause is not None:
                    pause()
                if stop.is_set() or self.state()["state"] != LAZY:
                    return
                try:
                    self.ensure(name)
                except OSError:
                    failed.append(name)  # logged by ensure
            pending = failed
            if pending:
                stop.wait(retry)

    def fetch_all(self) -> dict[str, str]:
        """Fetch every file now, then complete the layer (`save` and `push` need all of
        it); OSError(EIO) when the registry fails or the layer is bad."""
        for name in self._names():
            self.ensure(name)
        return self.complete()

    # -- completion --------------------------------------------------------------------

    def complete(self) -> dict[str, str]:
        """Once every chunk has arrived: fetch the rest of the blob, check its digest and
        diff id, and write `complete` (or `bad`). Returns the state."""
        if self.state()["state"] != LAZY:
            return self.state()
        if not all(self._marks()):
            raise OSError(errno.EAGAIN, f"layer {self.layer_id[:12]} has files still to fetch")
        with self._file_lock(_LAYER_LOCK):
            current = read_state(self.dir)
            if current["state"] != LAZY:
                return self.state()
            for start, end in self._gaps():
                try:
                    self._store_raw(self._reader().read(start, end), start)
                except FetchError as exc:
                    message = f"layer {self.layer_id[:12]}: cannot fetch bytes {start}-{end}: {exc.strerror}"
                    log.error("%s", message)
                    raise OSError(errno.EIO, message) from None
            problem = self._verify_blob()
            if problem:
                self.mark_bad(problem)
            else:
                write_state(self.dir, COMPLETE)
                log.info("lazy layer %s is complete (digest and diff id verified)", self.layer_id[:12])
        return self.state()

    def _gaps(self) -> list[tuple[int, int]]:
        """Blob ranges no chunk covers (tar headers, padding), before the TOC."""
        spans = sorted(c.span for c in self.chunks)
        gaps, at = [], 0
        for start, end in spans:
            if start > at:
                gaps.append((at, start))
            at = max(at, end)
        if at < self.source.toc_offset:
            gaps.append((at, self.source.toc_offset))
        return gaps

    def _verify_blob(self) -> str:
        """'' when the local blob has the layer's digest and its tar the diff id."""
        blob_digest, tar_digest = hashlib.sha256(), hashlib.sha256()
        with open(os.path.join(self.dir, BLOB_FILE), "rb") as raw:
            while part := raw.read(1 << 20):
                blob_digest.update(part)
            raw.seek(0)
            try:
                with gzip.GzipFile(fileobj=raw) as tar:
                    while part := tar.read(1 << 20):
                        tar_digest.update(part)
            except (OSError, EOFError, zlib.error) as exc:
                return f"the blob does not decompress: {exc}"
        if "sha256:" + blob_digest.hexdigest() != self.source.digest:
            return f"the blob hashes to sha256:{blob_digest.hexdigest()}, not {self.source.digest}"
        if "sha256:" + tar_digest.hexdigest() != self.source.diff_id:
            return f"the layer's tar hashes to sha256:{tar_digest.hexdigest()}, not the diff id {self.source.diff_id}"
        return ""

    def blob_path(self) -> str:
        return os.path.join(self.dir, BLOB_FILE)


def _index(toc: estargz.Toc) -> tuple[dict[str, File], list[Chunk]]:
    """Every regular file's chunks, numbered in TOC order; hard links name their target's File."""
    files: dict[str, File] = {}
    chunks: list[Chunk] = []
    links: list[tuple[str, str]] = []
    for entry in toc.entries:
        name = estargz.clean_name(entry.name)
        if entry.type == "hardlink":
            links.append((name, estargz.clean_name(entry.link_name)))
        if entry.type != "reg" or entry.size == 0:
            continue
        own = []
        for c in toc.chunks(entry.name):
            own.append(Chunk(len(chunks) + len(own), c, c.chunk_offset, c.chunk_size, toc.span(c)))
        chunks.extend(own)
        files[name] = File(len(files), name, entry.size, tuple(own))
    for name, target in links:
        if target in files:
            files[name] = files[target]
    return files, chunks


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


# -- making a lazy layer -------------------------------------------------------------------


def prepare(directory: str, source: BlobSource, toc_json: bytes, tail: bytes) -> None:
    """Write a new lazy layer's state into `directory` (which must not exist yet), made
    under a temporary name and renamed into place, so it exists whole or not at all.
    `tail` is the blob from the TOC's offset to its end (the TOC and the footer)."""
    toc = estargz.Toc.from_json(toc_json, toc_offset=source.toc_offset)
    _, chunks = _index(toc)
    tmp = directory + ".tmp"
    os.makedirs(tmp, mode=0o700)
    with open(os.path.join(tmp, TOC_FILE), "wb") as f:
        f.write(toc_json)
    with open(os.path.join(tmp, MAP_FILE), "wb") as f:
        f.truncate(len(chunks))
    with open(os.path.join(tmp, BLOB_FILE), "wb") as f:
        f.truncate(source.size)
        f.seek(source.toc_offset)
        f.write(tail)
    open(os.path.join(tmp, LOCK_FILE), "wb").close()
    source.save(tmp)
    write_state(tmp, LAZY)
    os.rename(tmp, directory)


def skeleton(toc_json: bytes, tail: bytes) -> tuple[IO[bytes], dict[str, int]]:
    """A layer tar with every TOC entry's metadata and no file data, plus the TOC's own
    tar member (it is part of the layer, as a full pull would extract it), and the size
    each regular file must be given once applied (its data arrives later)."""
    toc = estargz.Toc.from_json(toc_json)
    out = io.BytesIO()
    sizes: dict[str, int] = {}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in toc.entries:
            info = _tarinfo(entry)
            if info is None:
                continue
            if info.type == tarfile.REGTYPE and entry.size:
                sizes[info.name] = entry.size
            tar.addfile(info)
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(tail)), mode="r:") as own:
            for member in own:
                if member.isfile():
                    tar.addfile(member, own.extractfile(member))
    out.seek(0)
    return out, sizes


_TYPES = {"dir": tarfile.DIRTYPE, "reg": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
          "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}


def _tarinfo(entry: Any) -> tarfile.TarInfo | None:
    kind = _TYPES.get(entry.type)
    if kind is None:  # "chunk": a later part of a regular file
        return None
    info = tarfile.TarInfo(estargz.clean_name(entry.name) or ".")
    info.type = kind
    info.mode = entry.mode & 0o7777
    info.uid, info.gid = entry.uid, entry.gid
    info.uname, info.gname = entry.uname or "", entry.gname or ""
    info.mtime = entry.mtime
    info.size = 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = entry.link_name if kind == tarfile.SYMTYPE else estargz.clean_name(entry.link_name)
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = entry.dev_major, entry.dev_minor
    for key, value in entry.xattrs.items():
        info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return info


def give_sizes(branch: str, sizes: dict[str, int]) -> None:
    """Give each skeleton file its size (a hole until its chunks arrive), keeping its times."""
    for name, size in sizes.items():
        fd = open_in_root(branch, name, os.O_WRONLY)
        try:
            st = os.fstat(fd)
            os.ftruncate(fd, size)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)

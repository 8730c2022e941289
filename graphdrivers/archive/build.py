"""Deterministic layer tars: the same calls always give byte-identical archives.

One builder for every layer tar the project makes up rather than exports: the engine's
test images (`engine.images.testimages`), the bench workloads (`bench.workloads`) and the
archive tests. Every entry gets a fixed mtime (the builder's), owner root and the position
it was added in, so a tar is a pure function of its calls and results from two machines
describe the same bytes. It lives beside the reader and the applier so all three layers
of the project (graphdrivers, engine, bench) can use it.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from ..whiteouts import whiteout_path

MTIME = 1_600_000_000  # a fixed timestamp: archives must not depend on when they were made


@dataclass
class LayerBuilder:
    """Collects the entries of one layer and writes them as an uncompressed PAX tar.

    A path's missing parent directories are added (mode 0755) before it; `files` and
    `bytes` count the regular files and file data the layer adds (whiteouts are markers).
    """

    mtime: int = MTIME
    format: int = tarfile.PAX_FORMAT
    files: int = 0
    bytes: int = 0
    # each entry with what opens its data: written lazily, so big files never sit in memory
    _entries: list[tuple[tarfile.TarInfo, Callable[[], IO[bytes]] | None]] = field(default_factory=list)
    _dirs: set[str] = field(default_factory=set)

    def _info(self, path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent and parent not in self._dirs:
                self._dirs.add(parent)
                self._entries.append((self._info(parent, tarfile.DIRTYPE, 0o755), None))
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, self.mtime, 0, 0
        info.uname = info.gname = "root"
        return info

    def dir(self, path: str, mode: int = 0o755) -> None:
        if path not in self._dirs:
            info = self._info(path, tarfile.DIRTYPE, mode)
            self._dirs.add(path)
            self._entries.append((info, None))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self._entries.append((info, lambda: io.BytesIO(data)))
        self.files += 1
        self.bytes += len(data)

    def big_file(self, path: str, size: int, chunk: bytes, mode: int = 0o644) -> None:
        """A large file repeated from `chunk` (streamed, never held whole in memory)."""
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = size
        self._entries.append((info, lambda: _Repeat(chunk, size)))
        self.files += 1
        self.bytes += size

    def symlink(self, path: str, target: str) -> None:
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._entries.append((info, None))

    def whiteout(self, path: str) -> None:
        """Delete `path` from the layers below (OCI `.wh.<name>` marker)."""
        self.file(whiteout_path(path), b"")
        self.files -= 1  # a marker, not a file the layer adds

    def add(self, info: tarfile.TarInfo, data: bytes = b"") -> None:
        """An entry exactly as `info` says, no parents added: for tests that need unusual or
        hostile headers (devices, xattrs, `..` names, other tar formats)."""
        self._entries.append((info, (lambda: io.BytesIO(data)) if info.isreg() else None))

    def write(self, dest: str) -> None:
        with open(dest, "wb") as out:
            self.write_to(out)

    def write_to(self, out: IO[bytes]) -> None:
        with tarfile.open(fileobj=out, mode="w", format=self.format, encoding="utf-8",
                          errors="surrogateescape") as tar:
            for info, opener in self._entries:
                tar.addfile(info, opener() if opener is not None else None)

    def getvalue(self) -> bytes:
        """The tar in memory (small test layers)."""
        buf = io.BytesIO()
        self.write_to(buf)
        return buf.getvalue()


class _Repeat(io.RawIOBase):
    """A read-only stream of `size` bytes made by repeating `chunk`."""

    def __init__(self, chunk: bytes, size: int) -> None:
        self.chunk, self.left, self.pos = chunk, size, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.left
        n = min(n, self.left)
        out = bytearray()
        while len(out) < n:
            start = self.pos % len(self.chunk)
            piece = self.chunk[start : start + n - len(out)]
            out += piece
            self.pos += len(piece)
        self.left -= n
        return bytes(out)

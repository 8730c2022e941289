"""Deterministic layer tars: the same seed always gives byte-identical archives.

Every entry gets a fixed mtime, owner root and a sorted position, so a workload is a pure
function of its parameters and results from two machines describe the same bytes.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from typing import IO

from graphdrivers.whiteouts import whiteout_path

MTIME = 1_600_000_000  # a fixed timestamp: archives must not depend on when they were made


@dataclass
class LayerBuilder:
    """Collects entries for one layer and writes them as an uncompressed tar."""

    entries: list[tuple[str, str, object, int]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    _dirs: set[str] = field(default_factory=set)

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self._dirs:
                self._dirs.add(d)
                self.entries.append((d, "dir", None, 0o755))

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._parents(path)
        if path not in self._dirs:
            self._dirs.add(path)
            self.entries.append((path, "dir", None, mode))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        self.entries.append((path, "file", data, mode))
        self.files += 1
        self.bytes += len(data)

    def big_file(self, path: str, size: int, chunk: bytes, mode: int = 0o644) -> None:
        """A large file repeated from `chunk` (streamed, never held whole in memory)."""
        self._parents(path)
        self.entries.append((path, "big", (size, chunk), mode))
        self.files += 1
        self.bytes += size

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.entries.append((path, "symlink", target, 0o777))

    def whiteout(self, path: str) -> None:
        """Delete `path` from the layers below (OCI `.wh.<name>` marker)."""
        self.file(whiteout_path(path), b"")
        self.files -= 1  # a marker, not a file the layer adds

    def write(self, dest: str) -> None:
        with open(dest, "wb") as out:
            self.write_to(out)

    def write_to(self, out: IO[bytes]) -> None:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, kind, payload, mode in self.entries:
                info = tarfile.TarInfo(path)
                info.mtime, info.mode, info.uid, info.gid = MTIME, mode, 0, 0
                info.uname = info.gname = "root"
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "file":
                    assert isinstance(payload, bytes)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                elif kind == "big":
                    size, chunk = payload  # type: ignore[misc]
                    info.size = size
                    tar.addfile(info, _Repeat(chunk, size))
                else:
                    info.type, info.linkname = tarfile.SYMTYPE, str(payload)
                    tar.addfile(info)


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

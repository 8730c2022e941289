"""Where a lazy layer's blob is, and fetching byte ranges of it (HTTP Range requests).

Graphdrivers never import the engine: the engine, which resolved the registry, its
scheme and its auth, hands a driver a `BlobSource` -- the blob's URL, digest, size and
diff id, and the request headers that authorize a fetch. It is stored with the layer
(`source.json`, and the headers apart in `auth`, mode 0600), so whoever serves the layer
later (a FUSE process, or the engine completing the layer for `save`) fetches by itself.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"
AUTH_FILE = "auth"


class FetchError(OSError):
    """A range could not be fetched (registry gone, too slow, short or wrong answer): EIO."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)


@dataclass(frozen=True)
class BlobSource:
    url: str  # GET this blob: https://registry/v2/<repo>/blobs/<digest>
    digest: str
    size: int
    diff_id: str
    toc_offset: int  # where its eStargz TOC member starts (the footer says so)
    headers: dict[str, str] = field(default_factory=dict)  # Authorization, kept in a 0600 file

    def save(self, directory: str) -> None:
        """source.json, and the headers in `auth` (0600: they may hold credentials)."""
        public = {k: v for k, v in asdict(self).items() if k != "headers"}
        _write(os.path.join(directory, SOURCE_FILE), json.dumps(public).encode(), 0o644)
        _write(os.path.join(directory, AUTH_FILE), json.dumps(self.headers).encode(), 0o600)

    @classmethod
    def load(cls, directory: str) -> BlobSource:
        with open(os.path.join(directory, SOURCE_FILE), "rb") as f:
            public = json.load(f)
        with open(os.path.join(directory, AUTH_FILE), "rb") as f:
            headers = json.load(f)
        return cls(headers=headers, **public)


@dataclass(frozen=True)
class LazyBlob:
    """What a driver needs to make a lazy layer: the blob's source, its TOC (already
    checked against the layer's annotation) and the blob's tail from the TOC's offset
    (the TOC's gzip member and the footer, which also hold the TOC's own tar entry)."""

    source: BlobSource
    toc_json: bytes
    tail: bytes


def _write(path: str, data: bytes, mode: int) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


class RangeReader:
    """Byte ranges of one blob, each within `timeout` seconds in all (not per socket read),
    so a registry that stops answering costs a reader at most that long."""

    def __init__(self, source: BlobSource, timeout: float) -> None:
        self.source = source
        self.timeout = timeout
        import requests  # the HTTP stack, loaded only by whoever fetches (most driver users never do)

        self._requests = requests
        self.session = requests.Session()
        self.fetched = 0  # bytes this reader received

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the blob, or FetchError."""
        if not 0 <= start < end <= self.source.size:
            raise FetchError(f"range {start}-{end} is outside the blob's {self.source.size} bytes")
        deadline = time.monotonic() + self.timeout
        headers = {**self.source.headers, "Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        try:
            with self.session.get(self.source.url, headers=headers, stream=True,
                                  timeout=(self.timeout, self.timeout)) as resp:
                whole = (start, end) == (0, self.source.size)  # a 200 is right only when all was asked
                if resp.status_code != 206 and not (resp.status_code == 200 and whole):
                    raise FetchError(f"GET {self.source.url} bytes {start}-{end - 1}: the registry answered "
                                     f"{resp.status_code} {resp.reason}")
                parts, got = [], 0
                for part in resp.iter_content(1 << 20):
                    parts.append(part)
                    got += len(part)
                    if time.monotonic() > deadline:
                        raise FetchError(f"GET {self.source.url} bytes {start}-{end - 1}: "
                                         f"not done within {self.timeout:g} s")
        except self._requests.RequestException as exc:
            raise FetchError(f"GET {self.source.url} bytes {start}-{end - 1}: {exc}") from None
        self.fetched += got
        if got != end - start:
            raise FetchError(f"GET {self.source.url} bytes {start}-{end - 1}: {got} bytes came, not {end - start}")
        return b"".join(parts)

    def close(self) -> None:
        self.session.close()

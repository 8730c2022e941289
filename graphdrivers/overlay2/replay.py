"""A layer stream that can be read again from its first byte.

overlay2 applies a layer tar straight into the layer's diff dir. A few archives need
something from the lower layers first (a hard link to a file of a lower layer), which is
only known once the archive has been refused; the stream is then read again. A seekable
stream seeks back; any other is copied aside as it is read (in memory up to
SPOOL_MEMORY, then in a temporary file), so the common case costs nothing extra.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import IO

SPOOL_MEMORY = 16 << 20


class Replayable:
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._start: int | None = None
        try:
            if stream.seekable():
                self._start = stream.tell()
        except (AttributeError, OSError):
            pass
        self._copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) if self._start is None else None
        self._replaying = False

    def read(self, n: int = -1) -> bytes:
        if self._replaying:
            return self._copy.read(n)  # type: ignore[union-attr]
        data = self._stream.read(n)
        if self._copy is not None:
            self._copy.write(data)
        return data

    def rewind(self) -> None:
        """Start again from the first byte (the unread rest is read first, when spooling)."""
        if self._copy is None:
            self._stream.seek(self._start)  # type: ignore[arg-type]
            return
        if not self._replaying:
            shutil.copyfileobj(self._stream, self._copy)
            self._replaying = True
        self._copy.seek(0)

    def close(self) -> None:
        if self._copy is not None:
            self._copy.close()

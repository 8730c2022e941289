"""Docker's multiplexed stream format (logs and attach without a TTY).

Each frame is an 8-byte header -- the stream (1 stdout, 2 stderr), three zero bytes, the
payload length as a big-endian uint32 -- followed by the payload.
"""

from __future__ import annotations

import struct

STDOUT = 1
STDERR = 2
MAX_FRAME = 1 << 20


def frame(stream: int, data: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(data), MAX_FRAME):
        part = data[i : i + MAX_FRAME]
        out += struct.pack(">BxxxI", stream, len(part)) + part
    return bytes(out)


def stdout_frame(data: bytes) -> bytes:
    return frame(STDOUT, data)


def stderr_frame(data: bytes) -> bytes:
    return frame(STDERR, data)

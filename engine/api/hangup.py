"""Noticing that an API client went away while its request waits for something quiet.

A streamed reply learns of a vanished client only when it next writes; a request that
waits without writing (wait on a created container, events when none come, an attach
before its container starts) would wait for ever. A watch polls the connection for the
peer's hangup and sets an event the waiting code checks, as Go's request context does
for dockerd.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

# A plain request's client never half-closes: the end of its input is its going away.
# A hijacked attach's client half-closes when it has no stdin to send (the docker CLI
# does at once), so only a full close (HUP: both directions) counts there.
_PLAIN = select.POLLRDHUP | select.POLLHUP | select.POLLERR
_HIJACKED = select.POLLHUP | select.POLLERR


@contextlib.contextmanager
def watch(conn: socket.socket, on_hangup: Callable[[], None], *, hijacked: bool = False) -> Iterator[None]:
    """Call `on_hangup()` (once, from a watcher thread) if the peer of `conn` hangs up
    while the block runs; the watcher ends with the block."""
    done = os.eventfd(0, os.EFD_CLOEXEC)
    poller = select.poll()
    poller.register(conn.fileno(), _HIJACKED if hijacked else _PLAIN)
    poller.register(done, select.POLLIN)

    def run() -> None:
        ready = dict(poller.poll())
        if done in ready:  # the request ended first (its end wins over a hangup seen at once)
            return
        log.debug("API client hung up (events %#x)", ready.get(conn.fileno(), 0))
        on_hangup()

    watcher = threading.Thread(target=run, name="api-hangup-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        os.eventfd_write(done, 1)
        watcher.join()
        os.close(done)


class Cancellable:
    """A reply's chunks with the event that tells their producer the client went away
    (http.py calls `cancel()` on a hangup, and `close()` when the reply ends)."""

    def __init__(self, chunks: Iterator[bytes], cancelled: threading.Event) -> None:
        self.chunks = chunks
        self.cancelled = cancelled

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()

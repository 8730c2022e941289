"""A lock per key (a layer id) whose entry lives only while someone holds or waits on it.

A plain dict of locks keyed by layer id grows by one lock for every id ever touched, and
a long-running daemon touches millions. Here an entry counts its users (holders and
waiters) and is dropped by the last one out, so the map holds only the keys in use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: a layer operation may call another on the same id
        self.users = 0


class KeyedLocks:
    """`with locks.hold(key):` serialises work on one key, never across keys."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]

    def __len__(self) -> int:
        """Keys held or waited on now (what the map holds)."""
        with self._guard:
            return len(self._entries)

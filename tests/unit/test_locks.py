"""KeyedLocks: one lock per key, dropped once nobody holds or waits on it."""

from __future__ import annotations

import threading
import time

from graphdrivers.locks import KeyedLocks


def test_entries_are_dropped_when_idle() -> None:
    locks = KeyedLocks()
    for i in range(1000):
        with locks.hold(f"layer{i}"):
            assert len(locks) == 1
    assert len(locks) == 0


def test_reentrant_and_kept_while_waited_on() -> None:
    locks = KeyedLocks()
    entered = threading.Event()
    order: list[str] = []

    def other() -> None:
        entered.set()
        with locks.hold("a"):
            order.append("other")

    with locks.hold("a"), locks.hold("a"):  # re-entrant in one thread
        thread = threading.Thread(target=other)
        thread.start()
        entered.wait()
        time.sleep(0.05)
        assert len(locks) == 1
        order.append("first")
    thread.join()
    assert order == ["first", "other"]
    assert len(locks) == 0


def test_different_keys_do_not_block() -> None:
    locks = KeyedLocks()
    done = threading.Event()

    def other() -> None:
        with locks.hold("b"):
            done.set()

    with locks.hold("a"):
        threading.Thread(target=other).start()
        assert done.wait(5)

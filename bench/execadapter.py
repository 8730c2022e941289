"""The bench's view of the engine's execdrivers: start a process in a mounted rootfs.

The exec scenario times the engine's own execdrivers (oci via runc/crun, native). When
they cannot be used here, `load` raises ExecUnavailable with the reason, and the scenario
records "unavailable: <reason>" rows instead of numbers -- it never times a stand-in.
"""

from __future__ import annotations

import importlib
from typing import Protocol


class ExecUnavailable(Exception):
    """This execdriver cannot run here; the message says why."""


class Process(Protocol):
    def wait(self) -> int: ...

    def read_stdout(self, n: int) -> bytes: ...


class Runner(Protocol):
    name: str
    runtime: str

    def start(self, rootfs: str, argv: list[str], *, capture: bool) -> Process: ...

    def close(self) -> None: ...


def load(name: str) -> Runner:
    """A runner for execdriver `name` ("oci" or "native"), or ExecUnavailable."""
    try:
        module = importlib.import_module("engine.execdrivers")
    except ImportError as exc:
        raise ExecUnavailable(f"the engine's execdrivers are not available ({exc})") from None
    factory = getattr(module, "bench_runner", None)
    if factory is None:
        raise ExecUnavailable("engine.execdrivers has no bench_runner() entry point")
    try:
        return factory(name)
    except Exception as exc:
        raise ExecUnavailable(f"execdriver {name!r}: {exc}") from None

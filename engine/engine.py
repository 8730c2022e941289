"""The Engine: an engine root, its graphdriver, the image graph and the table of jobs.

One engine process owns a root at a time (an exclusive flock on `<root>/engine.lock`):
two processes applying layers and journaling into the same store would corrupt each
other's view, so the second one is refused with EngineLocked. Inside one process, jobs
may run in parallel threads; the Graph keeps their effects consistent.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Mapping
from typing import IO

import graphdrivers

from .errors import EngineError, EngineLocked
from .images.graph import Graph
from .images.graphdb import GraphDB
from .job import Handler, Job, lookup


class Engine:
    def __init__(self, root: str, driver: str | None = None, options: Mapping[str, str] | None = None) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o710, exist_ok=True)
        self._lock_fd: int | None = _lock_root(self.root)
        self.handlers: dict[str, Handler] = {}
        self.driver: graphdrivers.Driver | None = None
        self.db: GraphDB | None = None
        options = dict(options or {})
        # `exec.*` options choose the execdriver and runtime; the rest are the graphdriver's.
        self.exec_options = {k: options.pop(k) for k in list(options) if k.startswith("exec.")}
        try:
            _clear_spool(os.path.join(self.root, "tmp"))
            self.driver = graphdrivers.get_driver(driver, root=self.root, options=options)
            home = os.path.join(self.root, "image", self.driver.name)
            os.makedirs(home, mode=0o700, exist_ok=True)
            self.db = GraphDB(os.path.join(home, "graph.db"))
            self.graph = Graph(home, self.driver, self.db)
            from . import builtins

            builtins.install(self)
        except BaseException:
            self.close()
            raise

    def register(self, name: str, handler: Handler) -> None:
        if name in self.handlers:
            raise EngineError(f"job {name!r} is registered twice")
        self.handlers[name] = handler

    def handler(self, name: str) -> Handler:
        return lookup(self.handlers, name)

    def job(
        self,
        name: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> Job:
        return Job(self, name, list(args), env=env, stdin=stdin, stdout=stdout, stderr=stderr)

    def close(self) -> None:
        """Release the driver (unmount everything) and the root's lock; idempotent."""
        try:
            if self.driver is not None:
                self.driver.cleanup()
            if self.db is not None:
                self.db.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor drops the flock
                self._lock_fd = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clear_spool(tmpdir: str) -> None:
    """Spool files (stdin archives, commit diffs) a killed engine left; we hold the lock."""
    if os.path.isdir(tmpdir):
        shutil.rmtree(tmpdir)
    os.makedirs(tmpdir, mode=0o700)


def _lock_root(root: str) -> int:
    path = os.path.join(root, "engine.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        os.close(fd)
        raise EngineLocked(root, f"pid {holder}" if holder else "") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd

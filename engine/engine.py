"""The Engine: an engine root, the services that work on it, and the table of jobs.

One engine process owns a root at a time (an exclusive flock on `<root>/engine.lock`):
two processes applying layers and journaling into the same store would corrupt each
other's view, so the second one is refused with EngineLocked. Inside one process, jobs
may run in parallel threads; the Graph keeps their effects consistent.

The services are built here, in the order they depend on each other, and nowhere else:
driver -> db -> graph (images) -> containers, registry; api. Jobs reach them as
`job.engine.<service>`; no module adds attributes to an Engine.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Mapping
from typing import IO, Any

import graphdrivers

from . import builtins
from .api import ApiService
from .containers.store import Containers
from .errors import EngineError, EngineLocked
from .events import Events
from .images.graph import Graph
from .images.graphdb import GraphDB
from .job import Job, lookup
from .jobspec import JobSpec, encode
from .network.service import Networks
from .registry.service import RegistryService

log = logging.getLogger(__name__)


class Engine:
    root: str
    driver: graphdrivers.Driver
    db: GraphDB  # entities, edges, images, layers, blob sources: one SQLite file per driver
    graph: Graph  # the images (Docker's classic name for the image store)
    network: Networks  # the networkdriver: networks, addresses, the container hooks
    events: Events  # what happened to containers and images (docker events)
    containers: Containers
    registry: RegistryService
    api: ApiService
    jobs: dict[str, JobSpec]

    def __init__(self, root: str, driver: str | None = None, options: Mapping[str, str] | None = None, *,
                 read_only: bool = False) -> None:
        """`read_only`: the caller only reads (images, ps, inspect...), so whatever opening the
        engine creates in the root is removed on close: a driver named for a look at a root that
        never held its layers must not leave a home that makes the root hold "several drivers"."""
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o710, exist_ok=True)
        self._lock_fd: int | None = _lock_root(self.root)
        self._existed = _entries(self.root) if read_only else None
        self._driver: graphdrivers.Driver | None = None
        self._db: GraphDB | None = None
        options = dict(options or {})
        # `exec.*` options choose the execdriver and runtime; the rest are the graphdriver's.
        exec_options = {k: options.pop(k) for k in list(options) if k.startswith("exec.")}
        try:
            _clear_spool(os.path.join(self.root, "tmp"))
            self.driver = self._driver = graphdrivers.get_driver(driver, root=self.root, options=options)
            home = os.path.join(self.root, "image", self.driver.name)
            os.makedirs(home, mode=0o700, exist_ok=True)
            self.db = self._db = GraphDB(os.path.join(home, "graph.db"))
            self.graph = Graph(home, self.driver, self.db)
            self.network = Networks(self.root)
            self.events = Events(self.root)
            self.containers = Containers(self.root, self.driver, self.db, self.graph, exec_options, self.network,
                                         self.events)
            self.registry = RegistryService(self.db)
            self.api = ApiService()
            self.jobs = builtins.specs()
        except BaseException:
            self.close()
            raise
        log.info("engine on %s with the %s driver", self.root, self.driver.name)

    def register(self, spec: JobSpec) -> None:
        """Add a job beyond the built-in ones (tests, embedding programs)."""
        if spec.name in self.jobs:
            raise EngineError(f"job {spec.name!r} is registered twice")
        self.jobs[spec.name] = spec

    def spec(self, name: str) -> JobSpec:
        return lookup(self.jobs, name)

    def job(
        self,
        name: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> Job:
        """A job to run; `options` are typed values (checked against the job's declaration
        when it runs), `env` the same as strings."""
        env = dict(env or {})
        env.update({key: encode(value) for key, value in (options or {}).items()})
        return Job(self, name, list(args), env=env, stdin=stdin, stdout=stdout, stderr=stderr)

    def close(self) -> None:
        """Release the driver (unmount everything) and the root's lock; idempotent."""
        try:
            if self._driver is not None:
                containers = getattr(self, "containers", None)
                if containers is not None:
                    containers.close()
                self._driver.cleanup()
            if self._db is not None:
                self._db.close()
            if self._existed is not None:
                _remove_new(self.root, self._existed)
                self._existed = None
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor drops the flock
                self._lock_fd = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _entries(root: str) -> set[str]:
    """The root's entries and those of its image/ directory (one per driver), as relative paths."""
    found = set(os.listdir(root))
    image = os.path.join(root, "image")
    if os.path.isdir(image):
        found |= {os.path.join("image", name) for name in os.listdir(image)}
    return found


def _remove_new(root: str, existed: set[str]) -> None:
    """Remove what a read-only engine created in the root (the lock file stays: we hold it)."""
    for entry in sorted(_entries(root) - existed - {"engine.lock"}, key=len, reverse=True):
        path = os.path.join(root, entry)
        log.debug("removing %s: a read-only command created it", path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


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

"""The `serveapi` job: the Docker Engine API on unix and TCP sockets.

Like dockerd, it listens on every `--host` given (unix://PATH, tcp://ADDR:PORT), creates
the unix socket 0660 owned by root and an optional group, and on shutdown stops running
containers (no live restore) so that every mount is released before the engine closes.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import threading
from urllib.parse import urlsplit

from graphdrivers.errors import DriverError, InvalidLayerId, LayerNotFound

from ..containers.restart import RestartManager
from ..engine import Engine
from ..errors import (
    Conflict,
    ContainerStartError,
    EngineError,
    InvalidArchive,
    InvalidReference,
    NoSuchContainer,
    NoSuchExec,
    NoSuchImage,
    NoSuchNetwork,
    NoSuchVolume,
    RegistryError,
    UsageError,
)
from ..execdrivers.base import STATUS_CANNOT_INVOKE, STATUS_NOT_FOUND
from ..job import Job
from ..system.info import API_VERSION
from .http import Router, TCPServer, UnixServer, make_handler
from .routes import containers as routes_containers
from .routes import exec as routes_exec
from .routes import images as routes_images
from .routes import lifecycle as routes_lifecycle
from .routes import networks as routes_networks
from .routes import system as routes_system
from .routes import volumes as routes_volumes

log = logging.getLogger(__name__)

DEFAULT_HOST = "unix:///run/strata/strata.sock"
SHUTDOWN_STOP_TIMEOUT = 5.0


def error_status(exc: Exception) -> tuple[int, str] | None:
    """The HTTP status of a domain error (Docker's errdefs mapping)."""
    if isinstance(exc, NoSuchImage | NoSuchContainer | NoSuchVolume | NoSuchNetwork | NoSuchExec | LayerNotFound):
        return 404, str(exc)
    if isinstance(exc, RegistryError):
        if exc.http_status in (401, 403, 404):
            return exc.http_status, str(exc)
        return 502, str(exc)
    if isinstance(exc, Conflict):
        return 409, str(exc)
    if isinstance(exc, InvalidReference | UsageError | InvalidArchive | InvalidLayerId):
        return 400, str(exc)
    if isinstance(exc, ContainerStartError) and exc.status in (STATUS_CANNOT_INVOKE, STATUS_NOT_FOUND):
        return 400, str(exc)  # dockerd's startInvalidConfigError: the command is missing or not executable
    if isinstance(exc, EngineError | DriverError):
        return 500, str(exc)
    return None


def build_router(engine: Engine) -> Router:
    router = Router()
    for module in (routes_system, routes_images, routes_containers, routes_volumes, routes_networks, routes_exec,
                   routes_lifecycle):
        module.add_routes(router, engine)
    return router


class ApiServer:
    """Serves the API on every host until `stop()`."""

    def __init__(self, engine: Engine, hosts: list[str], group: str | None = None) -> None:
        self.engine = engine
        self.hosts = hosts or [DEFAULT_HOST]
        self.group = group
        self.servers: list[UnixServer | TCPServer] = []
        self.sockets: list[str] = []
        self.stopped = threading.Event()
        handler = make_handler(build_router(engine), {"Api-Version": API_VERSION,
                                                      "Docker-Experimental": "false", "Ostype": "linux",
                                                      "Server": "strata"}, error_status)
        try:
            for host in self.hosts:
                self.servers.append(self._listen(host, handler))
        except BaseException:
            self._close()
            raise

    def _listen(self, host: str, handler: type) -> UnixServer | TCPServer:
        url = urlsplit(host)
        if url.scheme == "unix":
            path = url.path
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a stale socket of a daemon that died
            server = UnixServer(path, handler)
            gid = -1
            if self.group:
                try:
                    gid = grp.getgrnam(self.group).gr_gid
                except KeyError:
                    server.server_close()
                    raise UsageError(f"group {self.group!r} does not exist") from None
            os.chown(path, 0, gid)
            os.chmod(path, 0o660)
            self.sockets.append(path)
            return server
        if url.scheme == "tcp":
            if not url.port:
                raise UsageError(f"{host}: a TCP host needs a port (tcp://127.0.0.1:2375)")
            return TCPServer((url.hostname or "127.0.0.1", url.port), handler)
        raise UsageError(f"unsupported host {host!r}: use unix:///path or tcp://ADDRESS:PORT")

    def serve(self) -> None:
        threads = [threading.Thread(target=s.serve_forever, name=f"api-{i}", daemon=True)
                   for i, s in enumerate(self.servers)]
        restarts = RestartManager(self.engine.containers)  # policies apply while a daemon runs
        restarts.start()
        for t in threads:
            t.start()
        try:
            self.stopped.wait()
        finally:
            restarts.stop()
            self._close()
            self._stop_containers()

    def stop(self) -> None:
        self.stopped.set()

    def _close(self) -> None:
        for server in self.servers:
            server.shutdown() if self.stopped.is_set() else None
            server.server_close()
        for path in self.sockets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _stop_containers(self) -> None:
        store = self.engine.containers
        for c in store.list():
            log.info("stopping container %s on shutdown", c.short_id)
            try:
                store.stop(c, SHUTDOWN_STOP_TIMEOUT, by_user=False)  # `unless-stopped` starts it again
            except (EngineError, DriverError) as exc:
                log.warning("could not stop container %s on shutdown: %s", c.short_id, exc)


def serveapi(job: Job) -> int:
    """`serveapi [HOST...]` (group): serve until the engine's `api.stop()` is called."""
    o = job.options
    job.engine.network.configure_default(o["bip"], o["fixed_cidr"], o["bridge"])
    server = ApiServer(job.engine, job.args, o["group"])
    job.engine.api.serving(server)
    log.info("API listening on %s", ", ".join(server.hosts))
    job.write("API listening on " + ", ".join(server.hosts) + "\n")
    job.stdout.flush()
    server.serve()
    return 0

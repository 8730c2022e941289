"""serveapi: the Docker Engine API over the engine's jobs.

The engine's `api` service declares the `serveapi` job without importing the HTTP server:
every engine start would otherwise pay for http.server and the routes, while only
`strata daemon` uses them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..job import Job
from ..jobspec import JobTable, Option

if TYPE_CHECKING:
    from .server import ApiServer

jobs = JobTable()


class ApiService:
    """The engine's API server while `serveapi` runs, so that a signal handler can stop it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.server: ApiServer | None = None
        self._stopping = False

    def serving(self, server: ApiServer) -> None:
        """Record the server `serveapi` runs; a stop asked for before it started stops it at once."""
        with self._lock:
            self.server = server
            if self._stopping:
                server.stop()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if self.server is not None:
                self.server.stop()


@jobs.job("serveapi", args="[HOST...]", help="serve the Docker Engine API until SIGTERM", options={
    "group": Option(str, "group that may use the unix socket (it is 0660 root:GROUP)", ("-G", "--group")),
    "bridge": Option(str, "the default bridge's interface (default strata0); none: containers default to "
                     "network none", ("-b", "--bridge"), ""),
    "bip": Option(str, "the default bridge's address and prefix (default 172.17.0.1/16)", ("--bip",), ""),
    "fixed_cidr": Option(str, "allocate default-bridge addresses from this sub-range of --bip", ("--fixed-cidr",),
                         "")})
def serveapi(job: Job) -> int:
    from . import server

    return server.serveapi(job)

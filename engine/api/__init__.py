"""serveapi: the Docker Engine API over the engine's jobs.

`register` installs the `serveapi` job without importing the HTTP server: every engine
start would otherwise pay for http.server and the routes, while only `strata daemon` uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine import Engine
    from ..job import Job


def serveapi(job: Job) -> int:
    from . import server

    return server.serveapi(job)


def register(engine: Engine) -> None:
    engine.api = None  # the running ApiServer, so that a signal handler can stop it
    engine.register("serveapi", serveapi)

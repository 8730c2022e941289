"""/_ping, /version, /info, /system/df (the last three run the version, info and df jobs)."""

from __future__ import annotations

from ...engine import Engine
from .. import jobio
from ..http import Reply, Request, Router


def add_routes(router: Router, engine: Engine) -> None:
    @router.route("GET", "/_ping")
    def ping(req: Request) -> Reply:
        return Reply(200, b"OK", content_type="text/plain; charset=utf-8",
                     headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"})

    @router.route("GET", "/version")
    def version(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "version", options={"json": True}).json())

    @router.route("GET", "/info")
    def info(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "info", options={"json": True}).json())

    @router.route("GET", "/system/df")
    def system_df(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "df", options={"json": True}).json())

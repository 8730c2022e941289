"""/_ping, /version, /info, /system/df (the last two run the info and df jobs)."""

from __future__ import annotations

import platform

from ... import __version__
from ...engine import Engine
from .. import jobio
from ..http import Reply, Request, Router

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def add_routes(router: Router, engine: Engine) -> None:
    @router.route("GET", "/_ping")
    def ping(req: Request) -> Reply:
        return Reply(200, b"OK", content_type="text/plain; charset=utf-8",
                     headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"})

    @router.route("GET", "/version")
    def version(req: Request) -> Reply:
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": _arch(),
                   "KernelVersion": platform.release(), "GitCommit": "", "GoVersion": platform.python_version()}
        return Reply(200, {
            "Platform": {"Name": "strata"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__,
            **details,
            "BuildTime": "",
        })

    @router.route("GET", "/info")
    def info(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "info", options={"json": True}).json())

    @router.route("GET", "/system/df")
    def system_df(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "df", options={"json": True}).json())

"""Volume endpoints: create, list, inspect, remove (the local driver's named volumes)."""

from __future__ import annotations

from typing import Any

from ...engine import Engine
from .. import jobio
from ..http import ApiError, Reply, Request, Router


def add_routes(router: Router, engine: Engine) -> None:
    @router.route("POST", "/volumes/create")
    def create(req: Request) -> Reply:
        body: Any = req.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "the volume config must be an object")
        unknown = sorted(set(body) - {"Name", "Driver", "DriverOpts", "Labels"})
        if unknown and any(body[k] for k in unknown):
            raise ApiError(400, f"{unknown[0]} is not supported by strata's volumes")
        labels, opts = body.get("Labels") or {}, body.get("DriverOpts") or {}
        options = {"driver": body.get("Driver") or "local", "label": [f"{k}={v}" for k, v in labels.items()],
                   "opt": [f"{k}={v}" for k, v in opts.items()], "json": True}
        job = jobio.run(engine, "volume_create", *([body["Name"]] if body.get("Name") else []), options=options)
        return Reply(201, job.json())

    @router.route("GET", "/volumes")
    def list_(req: Request) -> Reply:
        req.refuse_filters()
        return Reply(200, {"Volumes": jobio.run(engine, "volume_ls", options={"json": True}).json(), "Warnings": []})

    @router.route("GET", "/volumes/{name}")
    def inspect(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "volume_inspect", req.params["name"]).json()[0])

    @router.route("DELETE", "/volumes/{name}")
    def remove(req: Request) -> Reply:
        jobio.run(engine, "volume_rm", req.params["name"])
        return Reply(204, None)

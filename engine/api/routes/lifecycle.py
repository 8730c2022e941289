"""Endpoints of running containers beyond start and stop: restart, pause, unpause, rename,
update, top, stats, the archive (docker cp), and the event stream."""

from __future__ import annotations

import base64
import json
from typing import Any

from ...containers import copy
from ...engine import Engine
from .. import jobio
from ..createbody import restart_policy
from ..http import ApiError, Reply, Request, Router

# HostConfig fields of POST /containers/{id}/update that strata writes (update's options)
UPDATE_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "CpuShares", "CpuPeriod", "CpuQuota", "PidsLimit")
PATH_STAT = "X-Docker-Container-Path-Stat"


def _path_stat(info: dict[str, Any]) -> dict[str, str]:
    return {PATH_STAT: base64.b64encode(json.dumps(info).encode()).decode()}


def add_routes(router: Router, engine: Engine) -> None:
    store = engine.containers

    def container_id(req: Request) -> str:
        return store.get(req.params["id"]).id  # a missing container is a 404

    @router.route("POST", "/containers/{id}/pause")
    def pause(req: Request) -> Reply:
        jobio.run(engine, "pause", container_id(req))
        return Reply(204, None)

    @router.route("POST", "/containers/{id}/unpause")
    def unpause(req: Request) -> Reply:
        jobio.run(engine, "unpause", container_id(req))
        return Reply(204, None)

    @router.route("POST", "/containers/{id}/restart")
    def restart(req: Request) -> Reply:
        req.refuse_arg("signal", "a container stops with its stop signal (--stop-signal at create)")
        jobio.run(engine, "restart", container_id(req), options={"time": req.int_arg("t", 10)})
        return Reply(204, None)

    @router.route("POST", "/containers/{id}/rename")
    def rename(req: Request) -> Reply:
        name = req.arg("name")
        if not name:
            raise ApiError(400, "rename needs a name")
        jobio.run(engine, "rename", container_id(req), name)
        return Reply(204, None)

    @router.route("POST", "/containers/{id}/update")
    def update(req: Request) -> Reply:
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the update body must be a JSON object")
        unknown = sorted(k for k, v in body.items() if v and k not in UPDATE_FIELDS and k != "RestartPolicy")
        if unknown:
            raise ApiError(400, f"update of {', '.join(unknown)} is not supported (strata updates "
                                f"{', '.join(UPDATE_FIELDS)} and RestartPolicy)")
        policy = body.get("RestartPolicy") or {}
        options = {
            "memory": _size(body, "Memory"),
            "memory_swap": _size(body, "MemorySwap"),
            "memory_reservation": _size(body, "MemoryReservation"),
            "cpu_shares": int(body.get("CpuShares") or 0),
            "cpu_period": int(body.get("CpuPeriod") or 0),
            "cpu_quota": int(body.get("CpuQuota") or 0),
            "pids_limit": int(body.get("PidsLimit") or 0),
            "restart": restart_policy(policy) if policy.get("Name") else "",
        }
        jobio.run(engine, "update", container_id(req), options=options)
        return Reply(200, {"Warnings": []})

    @router.route("GET", "/containers/{id}/top")
    def top(req: Request) -> Reply:
        ps_args = (req.arg("ps_args") or "").split()
        return Reply(200, jobio.run(engine, "top", container_id(req), *ps_args, options={"json": True}).json())

    @router.route("GET", "/containers/{id}/stats")
    def stats(req: Request) -> Reply:
        stream = req.flag("stream", True)
        options = {"json": True, "no_stream": not stream, "one_shot": req.flag("one-shot")}
        cid = container_id(req)
        if not store.refresh(store.get(cid)).state.running:
            raise ApiError(409, f"container {cid[:12]} is not running")
        return Reply(200, stream=jobio.stream(engine, "stats", cid, options=options))

    @router.route("HEAD", "/containers/{id}/archive")
    def archive_stat(req: Request) -> Reply:
        info = copy.stat_path(store, store.get(req.params["id"]), _path_arg(req))
        return Reply(200, None, headers=_path_stat(info))

    @router.route("GET", "/containers/{id}/archive")
    def archive_get(req: Request) -> Reply:
        stream, info = copy.get_archive(store, store.get(req.params["id"]), _path_arg(req))
        return Reply(200, stream=_chunks(stream), content_type="application/x-tar", headers=_path_stat(info))

    @router.route("PUT", "/containers/{id}/archive")
    def archive_put(req: Request) -> Reply:
        copy.put_archive(store, store.get(req.params["id"]), _path_arg(req), req.body,
                         no_overwrite_dir_non_dir=req.flag("noOverwriteDirNonDir"),
                         copy_uid_gid=req.flag("copyUIDGID"))
        return Reply(200, None)

    @router.route("GET", "/events")
    def events(req: Request) -> Reply:
        filters = req.json_arg("filters") or {}
        if not isinstance(filters, dict):
            raise ApiError(400, "filters must be a JSON object")
        items = [f"{key}={value}" for key, values in filters.items()
                 for value in (values if isinstance(values, list) else [k for k, on in values.items() if on])]
        options = {"since": req.arg("since") or "", "until": req.arg("until") or "", "filter": items, "json": True}
        return Reply(200, stream=jobio.stream(engine, "events", options=options))


def _size(body: dict[str, Any], key: str) -> str:
    """A byte count of the body as update's size option takes it ("" when unset)."""
    value = int(body.get(key) or 0)
    return str(value) if value else ""


def _path_arg(req: Request) -> str:
    path = req.arg("path")
    if not path:
        raise ApiError(400, "the archive endpoints need a path")
    return path


def _chunks(stream: Any) -> Any:
    try:
        while chunk := stream.read(1 << 16):
            yield chunk
    finally:
        stream.close()

"""Endpoints of running containers beyond start and stop: restart, pause, unpause, rename,
update, top, stats, the archive (docker cp), and the event stream."""

from __future__ import annotations

import base64
import json
from typing import Any

from ...containers import args as containerargs
from ...containers import copy, observe
from ...containers.lifecycle import UPDATE_LIMITS
from ...engine import Engine
from .. import createbody, jobio, schema
from ..createbody import restart_policy
from ..http import ApiError, Reply, Request, Router

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
        # no t: the container's own stop timeout (--stop-timeout), else the default, as stop does
        jobio.run(engine, "restart", container_id(req), options={"time": req.int_arg("t", None)})
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
        schema.check(body, schema.UPDATE_CONFIG, "update config")
        fields = UPDATE_LIMITS.values()
        unknown = sorted(k for k, v in body.items() if not createbody.zero(v) and k not in fields
                         and k != "RestartPolicy")
        if unknown:
            raise ApiError(400, f"update of {', '.join(unknown)} is not supported (strata updates "
                                f"{', '.join(fields)} and RestartPolicy)")
        policy = body.get("RestartPolicy") or {}
        try:  # the create options' own reading of HostConfig fields (containers/args.py)
            values = containerargs.from_api({}, {k: v for k, v in body.items() if k in fields})
        except containerargs.UsageError as exc:
            raise ApiError(400, f"invalid update request: {exc}") from None
        options = {
            "memory": values.get("memory", ""), "memory_swap": values.get("memory_swap", ""),
            "memory_reservation": str(body.get("MemoryReservation") or ""), "cpus": values.get("cpus", ""),
            "cpu_shares": values.get("cpu_shares", ""), "cpu_period": values.get("cpu_period", ""),
            "cpu_quota": values.get("cpu_quota", ""), "cpuset_cpus": values.get("cpuset_cpus", ""),
            "pids_limit": values.get("pids_limit", ""),
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
        c = store.refresh(store.get(req.params["id"]))
        if not c.state.running:
            if not stream:  # dockerd answers one empty reading; a stream of nothing would never end
                return Reply(200, observe.empty_stats(c))
            raise ApiError(409, f"container {c.short_id} is not running")
        return Reply(200, stream=jobio.stream(engine, "stats", c.id, options=options))

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
        options = {"since": req.arg("since") or "", "until": req.arg("until") or "", "filter": req.filters(),
                   "json": True}
        return Reply(200, stream=jobio.stream(engine, "events", options=options))


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

"""Observing running containers: `top` (their processes) and `stats` (their cgroups' counters).

`top` runs the host's ps, as Docker does, and keeps the rows whose PID is one of the
container's processes (its cgroup's). `stats` reads the container's cgroups and gives
Docker's stats JSON (the API, docker-py and the docker CLI's table read it) or the CLI's
table; streaming samples once a second, as Docker's collector does, and a one-shot
sample still carries the previous second's CPU counters so a CPU % can be computed.
"""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

from graphdrivers.units import human_size

from ..errors import Conflict, EngineError, UsageError
from ..images.view import table
from ..job import Job
from ..jobspec import JSON, JobTable, Option
from .record import Container, now_iso
from .store import Containers

jobs = JobTable()

INTERVAL = 1.0  # seconds between stats samples
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: a reading that has no time (Docker's "preread" of the first)
DEFAULT_PS_ARGS = "-ef"


def _store(job: Job) -> Containers:
    return job.engine.containers


def processes(store: Containers, c: Container, ps_args: str = DEFAULT_PS_ARGS) -> dict[str, Any]:
    """Docker's top: {"Titles": ps's header, "Processes": the container's rows}."""
    pids = set(store.cgroups(c).pids())
    try:
        result = subprocess.run(["ps", *ps_args.split()], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise EngineError("top needs ps (procps) on the host") from None
    if result.returncode != 0:
        raise UsageError(f"ps {ps_args} failed: {result.stderr.strip()}")
    lines = result.stdout.splitlines()
    titles = lines[0].split()
    if "PID" not in titles:
        raise UsageError(f"ps {ps_args} prints no PID column: top cannot tell the container's processes")
    column = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            rows.append(fields)
    return {"Titles": titles, "Processes": rows}


@jobs.job("top", args="CONTAINER [PS_OPTION...]", options={"json": JSON},
          help="the processes of a running container (ps options, default -ef)")
def top(job: Job) -> int:
    store = _store(job)
    c = store.get(job.args[0])
    found = processes(store, c, " ".join(job.args[1:]) or DEFAULT_PS_ARGS)
    if job.options["json"]:
        job.write_json(found)
        return 0
    rows = [tuple(found["Titles"])] + [tuple(r) + ("",) * (len(found["Titles"]) - len(r)) for r in found["Processes"]]
    job.write(table(rows))
    return 0


def sample(store: Containers, c: Container) -> dict[str, Any]:
    """One stats reading of a running container, in Docker's shape (without precpu/preread)."""
    data = store.cgroups(c).stats()
    return {"read": now_iso(), "id": c.id, "name": "/" + c.name, "num_procs": 0, "storage_stats": {}, **data}


def _empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0, "throttling_data": {}}


def empty_stats(c: Container) -> dict[str, Any]:
    """dockerd's one reading of a container that is not running (stream=false): the zero
    reading, named, rather than an error (docker-py's stats(stream=False) reads it)."""
    return {"read": ZERO_TIME, "preread": ZERO_TIME, "id": c.id, "name": "/" + c.name, "num_procs": 0,
            "storage_stats": {}, "pids_stats": {}, "memory_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None},
            "cpu_stats": _empty_cpu(), "precpu_stats": _empty_cpu()}


def cpu_percent(s: dict[str, Any]) -> float:
    """The docker CLI's CPU %: container CPU time over host CPU time since the previous reading."""
    cpu, pre = s["cpu_stats"], s["precpu_stats"]
    delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    if delta <= 0 or system <= 0 or not pre["system_cpu_usage"]:
        return 0.0
    return delta / system * cpu["online_cpus"] * 100.0


def row(s: dict[str, Any]) -> tuple[str, ...]:
    """One line of the CLI's stats table (the docker CLI's columns, without NET I/O)."""
    mem = s["memory_stats"]
    used = mem["usage"] - mem["stats"].get("total_inactive_file", 0)
    read = sum(e["value"] for e in s["blkio_stats"]["io_service_bytes_recursive"] if e["op"].lower() == "read")
    written = sum(e["value"] for e in s["blkio_stats"]["io_service_bytes_recursive"] if e["op"].lower() == "write")
    return (s["id"][:12], s["name"].lstrip("/"), f"{cpu_percent(s):.2f}%",
            f"{human_size(used)} / {human_size(mem['limit'])}", f"{used / mem['limit'] * 100:.2f}%",
            f"{human_size(read)} / {human_size(written)}", str(s["pids_stats"].get("current", 0)))


HEADER = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O", "PIDS")


@jobs.job("stats", args="CONTAINER...", help="CPU, memory, block I/O and pids of running containers", options={
    "no_stream": Option(bool, "one reading, then exit", ("--no-stream",)),
    "one_shot": Option(bool, "with --no-stream: at once, without the previous second's CPU reading"),
    "json": Option(bool, "Docker's stats JSON, one object a line", ("--json",))})
def stats(job: Job) -> int:
    """`stats CONTAINER...`: a table (or JSON lines) once a second until they all stop or the
    reader goes away; --no-stream: one reading, which still carries the CPU counters of a
    second before (Docker's precpu_stats) unless one_shot."""
    store = _store(job)
    containers = [store.refresh(store.get(ref)) for ref in job.args]
    for c in containers:
        if not c.state.running:
            raise Conflict(f"container {c.short_id} is not running")
    stop: threading.Event = getattr(job, "cancelled", None) or threading.Event()
    once, one_shot = job.options["no_stream"], job.options["no_stream"] and job.options["one_shot"]
    previous: dict[str, dict[str, Any]] = {}
    if once and not one_shot:
        previous = {c.id: sample(store, c) for c in containers}
        stop.wait(INTERVAL)
    while containers:
        readings = []
        for c in list(containers):
            try:
                current = sample(store, c)
            except Conflict:  # it stopped
                containers.remove(c)
                continue
            before = previous.get(c.id)
            current["precpu_stats"] = before["cpu_stats"] if before else _empty_cpu()
            current["preread"] = before["read"] if before else ZERO_TIME
            previous[c.id] = current
            readings.append(current)
        try:
            if job.options["json"]:
                job.write("".join(json.dumps(r) + "\n" for r in readings))
            elif readings:
                job.write(table([HEADER, *(row(r) for r in readings)]))
            job.stdout.flush()
        except BrokenPipeError:  # the reader went away: the end of a stream, not an error
            break
        if once or stop.wait(INTERVAL):
            break
    return 0

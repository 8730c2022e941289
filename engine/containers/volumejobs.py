"""The volume jobs: volume_create, volume_ls, volume_inspect, volume_rm (`strata volume ...`)."""

from __future__ import annotations

from ..errors import EngineError, NoSuchVolume, UsageError
from ..images.view import table
from ..job import Job
from ..jobspec import JSON, JobTable, Option
from .store import Containers

jobs = JobTable()


def _store(job: Job) -> Containers:
    return job.engine.containers


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: KEY=VALUE")
        out[key] = value
    return out


@jobs.job("volume_create", args="[NAME]", help="create a named volume", options={
    "driver": Option(str, "volume driver (local)", ("-d", "--driver"), "local"),
    "label": Option(list, "KEY=VALUE metadata", ("--label",)),
    "opt": Option(list, "driver option KEY=VALUE (the local driver takes none)", ("-o", "--opt")),
    "json": JSON})
def volume_create(job: Job) -> int:
    """`volume create [NAME]`: prints the name (json: the volume's inspect object)."""
    o = job.options
    volume = _store(job).volumes.create(job.args[0] if job.args else "", driver=o["driver"],
                                        labels=_pairs(o["label"], "label"), options=_pairs(o["opt"], "option"))
    if o["json"]:
        job.write_json(volume)
    else:
        job.write(volume["Name"] + "\n")
    return 0


@jobs.job("volume_ls", help="list volumes", options={
    "quiet": Option(bool, "names only", ("-q", "--quiet")), "json": JSON})
def volume_ls(job: Job) -> int:
    """`volume ls` (quiet: names only; json)."""
    found = _store(job).volumes.list()
    if job.options["json"]:
        job.write_json(found)
    elif job.options["quiet"]:
        job.write("".join(v["Name"] + "\n" for v in found))
    else:
        job.write(table([("DRIVER", "VOLUME NAME"), *((v["Driver"], v["Name"]) for v in found)]))
    return 0


@jobs.job("volume_inspect", args="NAME...", help="volume details as JSON")
def volume_inspect(job: Job) -> int:
    """`volume inspect NAME...`: the first missing one is raised (404 through the API)."""
    volumes = _store(job).volumes
    job.write_json_each(job.args, volumes.inspect, NoSuchVolume)
    return 0


@jobs.job("volume_rm", args="NAME...", help="remove volumes no container names", options={
    "force": Option(bool, "a volume that does not exist is no error", ("-f", "--force"))})
def volume_rm(job: Job) -> int:
    """`volume rm NAME...`: refuses a volume a container still names; force (as dockerd's)
    only forgives a missing volume, never one in use."""
    store = _store(job)
    status = 0
    for name in job.args:
        try:
            store.volumes.remove(name, store.volume_users(name))
            job.write(name + "\n")
        except EngineError as exc:
            if job.options["force"] and isinstance(exc, NoSuchVolume):
                continue
            if len(job.args) == 1:
                raise
            job.error_line(f"Error: {exc}")
            status = 1
    return status

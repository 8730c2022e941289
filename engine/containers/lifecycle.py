"""The lifecycle jobs of running containers: restart, pause, unpause, rename, update, cp."""

from __future__ import annotations

from ..errors import Conflict, UsageError
from ..job import Job
from ..jobspec import JobTable, Option
from . import hostconfig
from .copy import copy
from .hostconfig import check_reservation
from .jobs import RUN_OPTIONS, STOP_TIME
from .restart import parse_policy
from .store import Containers

jobs = JobTable()

# update's options: create's own (one table, args.OPTIONS, read by one parser each), and the
# HostConfig field each sets; --memory-reservation is update's alone.
UPDATE_LIMITS = {"memory": "Memory", "memory_swap": "MemorySwap", "memory_reservation": "MemoryReservation",
                 "cpus": "NanoCpus", "cpu_shares": "CpuShares", "cpu_period": "CpuPeriod", "cpu_quota": "CpuQuota",
                 "cpuset_cpus": "CpusetCpus", "pids_limit": "PidsLimit"}
UNLIMITED_OK = ("MemorySwap", "PidsLimit", "CpuQuota")  # the limits -1 lifts


def _store(job: Job) -> Containers:
    return job.engine.containers


def _each(job: Job, action: str) -> int:
    """Apply `action` (a store method) to every named container, as docker does: report each
    failure and go on; status 1 if any failed."""
    store = _store(job)
    status = 0
    for ref in job.args:
        try:
            getattr(store, action)(store.get(ref))
            job.write(ref + "\n")
        except (Conflict, UsageError) as exc:
            job.error_line(f"Error: {exc}")
            status = 1
    return status


@jobs.job("pause", args="CONTAINER...", help="freeze every process of containers")
def pause(job: Job) -> int:
    return _each(job, "pause")


@jobs.job("unpause", args="CONTAINER...", help="thaw paused containers")
def unpause(job: Job) -> int:
    return _each(job, "unpause")


@jobs.job("restart", args="CONTAINER...", help="stop (if running) and start containers",
          options={"time": STOP_TIME})
def restart(job: Job) -> int:
    store = _store(job)
    for ref in job.args:
        c = store.get(ref)
        store.stop(c, job.options["time"])
        store.start(store.get(c.id))
        store.event(c, "restart")
        job.write(ref + "\n")
    return 0


@jobs.job("rename", args="CONTAINER NEW_NAME", help="rename a container")
def rename(job: Job) -> int:
    ref, new_name = job.args
    store = _store(job)
    store.rename(store.get(ref), new_name)
    return 0


@jobs.job("update", args="CONTAINER...", help="change the cgroup limits or restart policy of containers", options={
    **{name: RUN_OPTIONS[name] for name in UPDATE_LIMITS if name in RUN_OPTIONS},
    "restart": Option(str, "restart policy: no, on-failure[:N], always, unless-stopped", ("--restart",), "")})
def update(job: Job) -> int:
    """`update CONTAINER...`: limits are written to a running container's cgroups at once and
    kept in its record, so every later start applies them too."""
    limits = _limits(job)
    policy = parse_policy(job.options["restart"]) if job.options["restart"] else None
    if not limits and policy is None:
        raise UsageError("update needs at least one limit or --restart")
    store = _store(job)
    for ref in job.args:
        c = store.refresh(store.get(ref))
        if policy is not None and policy != "no" and c.auto_remove:
            raise Conflict(f"container {c.short_id} is removed when it exits (--rm): it cannot have a restart policy")
        wanted = {**c.host_config(), **c.resources, **limits}  # what the container has once updated
        check_reservation(wanted["Memory"], wanted["MemoryReservation"], "--memory-reservation")
        if c.state.running and limits:
            store.cgroups(c).set_limits(limits)
        store.update(c, limits, policy)
        job.write(ref + "\n")
    return 0


def _limits(job: Job) -> dict[str, int | str]:
    """The limits asked for, by HostConfig name, parsed as create parses them (hostconfig)."""
    o = job.options
    limits: dict[str, int | str] = {}
    for name, key in UPDATE_LIMITS.items():
        text = str(o[name]).strip()
        if text == "" or (text == "0" and key != "CpusetCpus"):  # 0: unchanged (a cpuset "0" is CPU 0)
            continue
        if key == "NanoCpus":
            if o["cpu_period"] or o["cpu_quota"]:
                raise UsageError("conflicting options: --cpus and --cpu-period/--cpu-quota cannot both be set")
            limits["CpuQuota"], limits["CpuPeriod"] = hostconfig.cpu_quota(text)
            limits[key] = hostconfig.nano_cpus(text)
            continue
        if key == "CpusetCpus":
            hostconfig.check_cpuset(text)
            limits[key] = text
            continue
        value = hostconfig.containerargs_size(text, name) if key.startswith("Memory") else \
            hostconfig.integer(text, name)
        if value < -1 or (value == -1 and key not in UNLIMITED_OK):
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {text!r}")
        limits[key] = value
    memory, swap = int(limits.get("Memory", 0)), int(limits.get("MemorySwap", 0))
    if memory and 0 < swap < memory:
        raise UsageError("--memory-swap must be at least --memory (it is memory plus swap)")
    return limits


@jobs.job("cp", args="SRC DEST", help="copy files between a container (CONTAINER:PATH) and the local filesystem",
          options={"archive": Option(bool, "archive mode: keep the source's uid/gid (else the receiving side's "
                                           "user owns the copy: root in a container, you here)", ("-a", "--archive")),
                   "follow_link": Option(bool, "always follow a symlink in SRC", ("-L", "--follow-link"))})
def cp(job: Job) -> int:
    copy(_store(job), *job.args, archive=job.options["archive"], follow_link=job.options["follow_link"])
    return 0

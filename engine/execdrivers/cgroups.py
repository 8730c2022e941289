"""Which cgroup layout the host has: it decides whether crun can run as it is.

crun 1.8 refuses a *hybrid* host (cgroup v1 controllers plus a cgroup2 hierarchy at
/sys/fs/cgroup/unified) as soon as that cgroup2 hierarchy has any controller enabled
("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"). crun decides
this by looking at /sys/fs/cgroup/unified, so a crun started in a private mount namespace
where that one mount is detached sees a plain v1 host and works; the container's cgroups
are then v1 only (the cgroup2 controllers -- on this host just hugetlb -- are not used).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass

from graphdrivers import mountutil

from ..errors import ExecError

log = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"


@dataclass(frozen=True)
class CgroupLayout:
    mode: str  # "unified" (v2 only), "hybrid" (v1 + cgroup2 at .../unified), "legacy" (v1 only), "none"
    unified_controllers: tuple[str, ...] = ()

    @property
    def crun_needs_hidden_cgroup2(self) -> bool:
        return self.mode == "hybrid" and bool(self.unified_controllers)

    def describe(self) -> str:
        if self.mode == "hybrid":
            ctl = ", ".join(self.unified_controllers) or "no controllers"
            return f"hybrid (cgroup v1 + cgroup2 at {UNIFIED} with {ctl})"
        return {"unified": "cgroup v2", "legacy": "cgroup v1", "none": "no cgroup filesystem"}[self.mode]


def detect() -> CgroupLayout:
    types = {point: fstype for point, fstype, _ in mountutil.mount_table()}
    if types.get(CGROUP_ROOT) == "cgroup2":
        return CgroupLayout("unified")
    if types.get(UNIFIED) == "cgroup2":
        try:
            with open(os.path.join(UNIFIED, "cgroup.controllers")) as f:
                controllers = tuple(f.read().split())
        except OSError:
            controllers = ()
        return CgroupLayout("hybrid", controllers)
    if any(fstype == "cgroup" for fstype in types.values()):
        return CgroupLayout("legacy")
    return CgroupLayout("none")


# -- cgroup v1 limits, as the native execdriver applies them ----------------------------

PARENT = "strata"  # containers' cgroups are /<controller>/strata/<container id>
# made even without limits: pause (freezer), stats (cpuacct, memory, blkio, pids), top and update
# (cpu, cpuset, memory, pids) find the container in them, as in runc's
OBSERVED = ("freezer", "cpu", "cpuacct", "cpuset", "memory", "blkio", "pids")


def _rule_text(rule: dict) -> str:
    """An OCI device rule as devices.allow/deny takes it: `c 1:3 rwm`, `a`."""
    kind = rule.get("type", "a")
    if kind == "a" and "major" not in rule and "minor" not in rule:
        return "a"
    major = "*" if rule.get("major") is None else str(rule["major"])
    minor = "*" if rule.get("minor") is None else str(rule["minor"])
    return f"{kind} {major}:{minor} {rule.get('access', 'rwm')}"


def v1_writes(resources: dict) -> dict[str, list[tuple[str, str]]]:
    """(file, value) to write per v1 controller for an OCI `linux.resources`, in order."""
    writes: dict[str, list[tuple[str, str]]] = {"devices": []}
    for rule in resources.get("devices", []):
        writes["devices"].append(("devices.allow" if rule.get("allow") else "devices.deny", _rule_text(rule)))
    memory = resources.get("memory", {})
    if memory:
        mem = writes["memory"] = []
        if "limit" in memory:
            mem.append(("memory.limit_in_bytes", str(memory["limit"])))
        if "swap" in memory:
            mem.append(("memory.memsw.limit_in_bytes", str(memory["swap"])))
        if "reservation" in memory:
            mem.append(("memory.soft_limit_in_bytes", str(memory["reservation"])))
        if memory.get("disableOOMKiller"):
            mem.append(("memory.oom_control", "1"))
    cpu = resources.get("cpu", {})
    if "quota" in cpu or "shares" in cpu:
        c = writes["cpu"] = []
        if "quota" in cpu:
            c += [("cpu.cfs_period_us", str(cpu["period"])), ("cpu.cfs_quota_us", str(cpu["quota"]))]
        if "shares" in cpu:
            c.append(("cpu.shares", str(cpu["shares"])))
    if "cpus" in cpu:
        writes["cpuset"] = [("cpuset.cpus", cpu["cpus"])]
    if "pids" in resources:
        writes["pids"] = [("pids.max", str(resources["pids"]["limit"]))]
    return writes


class V1Cgroup:
    """A container's v1 cgroups: made with their limits before it starts, removed after.

    The container's first process joins them itself (writes 0 to each `cgroup.procs`)
    before it unshares anything, so every process it starts is limited from the first.
    """

    def __init__(self, container_id: str, controllers: tuple[str, ...]) -> None:
        self.dirs = {c: os.path.join(CGROUP_ROOT, c, PARENT, container_id) for c in controllers}

    @classmethod
    def create(cls, container_id: str, resources: dict) -> V1Cgroup:
        writes = v1_writes(resources)
        layout = detect()
        if layout.mode not in ("legacy", "hybrid"):
            if set(writes) != {"devices"}:
                raise ExecError(f"the native execdriver sets cgroup v1 limits only; this host has {layout.describe()}")
            return cls(container_id, ())
        wanted = [*writes, *(c for c in OBSERVED if c not in writes)]
        present = tuple(c for c in wanted if os.path.isdir(os.path.join(CGROUP_ROOT, c)))
        missing = sorted(set(writes) - set(present) - {"devices"})
        if missing:
            raise ExecError(f"cgroup controller {', '.join(missing)} is not mounted on this host")
        group = cls(container_id, present)
        try:
            for controller, path in group.dirs.items():
                parent = os.path.dirname(path)
                os.makedirs(parent, exist_ok=True)
                os.makedirs(path, exist_ok=True)
                if controller == "cpuset":
                    for d in (parent, path):  # a v1 cpuset starts empty: inherit before narrowing
                        for name in ("cpuset.cpus", "cpuset.mems"):
                            _write(d, name, _read(os.path.dirname(d), name))
                for name, value in writes.get(controller, []):
                    _write(path, name, value)
        except BaseException:
            group.remove()
            raise
        return group

    def join(self) -> None:
        """In the container's first process: move itself into every cgroup."""
        for path in self.dirs.values():
            _write(path, "cgroup.procs", "0")

    def remove(self) -> None:
        for path in self.dirs.values():
            remove_dir(path)


def remove_dir(path: str) -> None:
    """rmdir a cgroup; its last processes may take a moment to leave after the container ends."""
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    log.warning("cgroup %s is still busy; left in place", path)


def remove_container(container_id: str) -> None:
    """Remove what `V1Cgroup.create` made for a container, whichever engine made it."""
    for controller in os.listdir(CGROUP_ROOT) if os.path.isdir(CGROUP_ROOT) else ():
        path = os.path.join(CGROUP_ROOT, controller, PARENT, container_id)
        if os.path.isdir(path):
            if controller == "freezer":  # a paused container's frozen tasks never leave
                with contextlib.suppress(ExecError):
                    _write(path, "freezer.state", "THAWED")
            remove_dir(path)


def _read(d: str, name: str) -> str:
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def _write(d: str, name: str, value: str) -> None:
    try:
        with open(os.path.join(d, name), "w") as f:
            f.write(value)
    except OSError as exc:
        raise ExecError(f"cannot set {name}={value} in {d}: {exc.strerror}") from None

"""A running container's cgroups: found, frozen, measured, limited.

runc puts a container's first process in cgroups of its own (on this host's cgroup v1
hierarchies, under the engine's own cgroup of each controller); the native driver makes
`/sys/fs/cgroup/<controller>/strata/<container id>` (cgroups.V1Cgroup, the one place its
cgroups are made and removed), and an exec joins them. Either way the container's cgroups are read from
/proc/<pid>/cgroup of its first process, so pause, stats, top and update work alike for
both execdrivers. Pure cgroup v2 hosts are refused by name: every file read here is v1's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

from ..errors import ExecError, RuntimeNotSupported
from . import cgroups

log = logging.getLogger(__name__)

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer")  # what is read and written here
FREEZE_WAIT = 10.0  # seconds a freeze may take (FREEZING until every task has stopped)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _refuse_unified() -> None:
    if cgroups.detect().mode == "unified":
        raise RuntimeNotSupported("container cgroups", "this host has cgroup v2 only; strata reads cgroup v1 files")


@dataclass(frozen=True)
class ContainerCgroups:
    """controller -> the directory of the container's cgroup in that hierarchy."""

    paths: dict[str, str]

    @classmethod
    def of_process(cls, pid: int) -> ContainerCgroups:
        """The cgroups `pid` (a container's first process) is in."""
        _refuse_unified()
        try:
            lines = _read(f"/proc/{pid}/cgroup").splitlines()
        except FileNotFoundError:
            raise ExecError(f"process {pid} is gone") from None
        paths = {}
        for line in lines:
            _, names, path = line.split(":", 2)
            for name in names.split(","):
                if name in CONTROLLERS:
                    paths[name] = os.path.join(cgroups.CGROUP_ROOT, name, path.lstrip("/"))
        return cls(paths)

    def join(self) -> None:
        """Move the calling process into these cgroups (before it execs the container's command)."""
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), "0")

    def _path(self, controller: str) -> str:
        if controller not in self.paths:
            raise RuntimeNotSupported(f"the {controller} cgroup controller", "the container has no cgroup in it")
        return self.paths[controller]

    # -- freezer -----------------------------------------------------------------------

    def freeze(self) -> None:
        path = self._path("freezer")
        _write(os.path.join(path, "freezer.state"), "FROZEN")
        deadline = time.monotonic() + FREEZE_WAIT
        while _read(os.path.join(path, "freezer.state")) != "FROZEN":
            if time.monotonic() > deadline:
                _thaw_path(path)
                raise ExecError(f"the container's processes did not freeze in {FREEZE_WAIT}s")
            time.sleep(0.01)

    def thaw(self) -> None:
        _thaw_path(self._path("freezer"))

    def frozen(self) -> bool:
        return _read(os.path.join(self._path("freezer"), "freezer.state")) != "THAWED"

    # -- processes, statistics, limits ---------------------------------------------------

    def pids(self) -> list[int]:
        """Every process of the container (host pids)."""
        path = self.paths.get("pids") or self._path("freezer")
        return sorted(int(p) for p in _read(os.path.join(path, "cgroup.procs")).split())

    def stats(self) -> dict:
        """Docker's stats shape for cgroup v1: cpu_stats, memory_stats, blkio_stats, pids_stats."""
        cpuacct = self._path("cpuacct")
        percpu = [int(v) for v in _read(os.path.join(cpuacct, "cpuacct.usage_percpu")).split()]
        ticks = dict(line.split() for line in _read(os.path.join(cpuacct, "cpuacct.stat")).splitlines())
        tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        throttled = {}
        with contextlib.suppress(FileNotFoundError, KeyError):
            throttled = dict(line.split() for line in _read(os.path.join(self._path("cpu"), "cpu.stat")).splitlines())
        memory = self._path("memory")
        mem_stat = {k: int(v) for k, v in (line.split() for line in
                                            _read(os.path.join(memory, "memory.stat")).splitlines())}
        blkio = []
        with contextlib.suppress(FileNotFoundError, KeyError):
            service_bytes = os.path.join(self._path("blkio"), "blkio.throttle.io_service_bytes_recursive")
            for line in _read(service_bytes).splitlines():
                parts = line.split()
                if len(parts) == 3:
                    major, minor = parts[0].split(":")
                    blkio.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
        pids_stats = {}
        if "pids" in self.paths:
            pids_stats["current"] = int(_read(os.path.join(self.paths["pids"], "pids.current")))
            limit = _read(os.path.join(self.paths["pids"], "pids.max"))
            if limit != "max":
                pids_stats["limit"] = int(limit)
        return {
            "cpu_stats": {
                "cpu_usage": {"total_usage": int(_read(os.path.join(cpuacct, "cpuacct.usage"))),
                              "percpu_usage": percpu,
                              "usage_in_usermode": int(ticks.get("user", 0)) * tick_ns,
                              "usage_in_kernelmode": int(ticks.get("system", 0)) * tick_ns},
                "system_cpu_usage": system_cpu_usage(),
                "online_cpus": os.cpu_count() or len(percpu),
                "throttling_data": {"periods": int(throttled.get("nr_periods", 0)),
                                    "throttled_periods": int(throttled.get("nr_throttled", 0)),
                                    "throttled_time": int(throttled.get("throttled_time", 0))},
            },
            "memory_stats": {
                "usage": int(_read(os.path.join(memory, "memory.usage_in_bytes"))),
                "max_usage": int(_read(os.path.join(memory, "memory.max_usage_in_bytes"))),
                "failcnt": int(_read(os.path.join(memory, "memory.failcnt"))),
                "limit": min(int(_read(os.path.join(memory, "memory.limit_in_bytes"))), _host_memory()),
                "stats": mem_stat,
            },
            "blkio_stats": {"io_service_bytes_recursive": blkio},
            "pids_stats": pids_stats,
        }

    def set_limits(self, limits: dict[str, int | str]) -> None:
        """Write cgroup limits by Docker's HostConfig names (Memory, MemorySwap, MemoryReservation,
        CpuShares, CpuPeriod, CpuQuota, CpusetCpus, PidsLimit); 0 leaves one as it is, -1 lifts it."""
        memory, swap = limits.get("Memory", 0), limits.get("MemorySwap", 0)
        if memory or swap:
            path = self._path("memory")
            files = [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", swap)]
            # the kernel keeps memsw >= memory at every step: raise memsw first when memory grows
            current = int(_read(os.path.join(path, "memory.limit_in_bytes")))
            if memory and (memory == -1 or memory > current):
                files.reverse()
            for name, value in files:
                if value and os.path.exists(os.path.join(path, name)):
                    _write(os.path.join(path, name), str(value))
        for key, controller, name in (("MemoryReservation", "memory", "memory.soft_limit_in_bytes"),
                                      ("CpuShares", "cpu", "cpu.shares"), ("CpuPeriod", "cpu", "cpu.cfs_period_us"),
                                      ("CpuQuota", "cpu", "cpu.cfs_quota_us"), ("CpusetCpus", "cpuset", "cpuset.cpus"),
                                      ("PidsLimit", "pids", "pids.max")):
            value = limits.get(key, 0)
            if value:
                text = "max" if key == "PidsLimit" and int(value) < 0 else str(value)
                _write(os.path.join(self._own_path(controller), name), text)

    def _own_path(self, controller: str) -> str:
        """The container's own cgroup of `controller`: a limit is never written to the root one,
        which every process of the host shares."""
        path = self._path(controller)
        if os.path.normpath(path) == os.path.join(cgroups.CGROUP_ROOT, controller):
            raise RuntimeNotSupported(f"a {controller} limit", "the container has no cgroup of its own there")
        return path


def _thaw_path(path: str) -> None:
    _write(os.path.join(path, "freezer.state"), "THAWED")


def system_cpu_usage() -> int:
    """The host's CPU time in nanoseconds (Docker's system_cpu_usage, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(v) for v in fields) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

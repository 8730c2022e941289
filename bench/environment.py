"""What the machine was doing while a repetition ran, and pinning the run to CPUs.

Each row records the 1-minute load average when its repetition ended (`load1`) and the
share of CPU time the hypervisor stole over the repetition (`steal`, from /proc/stat), so a
reader can tell a slow repetition from a busy or oversubscribed machine. `--cpus` pins the
harness, and so everything it starts (FUSE servers, runtimes, fio), to a set of CPUs.
"""

from __future__ import annotations

import glob
import logging
import os
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)


class CpuListError(ValueError):
    """A --cpus list that is malformed or names CPUs this process may not use."""


def parse_cpus(text: str) -> set[int]:
    """A Linux CPU list ("0", "0-3", "0,2,4-5") as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise CpuListError(f"--cpus wants a CPU list like 0,2-3, got {text!r}") from None
        if first < 0 or last < first:
            raise CpuListError(f"--cpus: bad range {part!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise CpuListError("--cpus: empty CPU list")
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise CpuListError(
            f"--cpus: CPU(s) {sorted(cpus - allowed)} are not available to this process (allowed: {sorted(allowed)})"
        )
    return cpus


def pin(cpus: set[int]) -> None:
    """Pin this process; threads and child processes started later inherit the mask."""
    os.sched_setaffinity(0, cpus)
    log.info("pinned to CPUs %s", sorted(cpus))


def _cpu_times() -> tuple[int, int]:
    """(all jiffies, steal jiffies) of the machine since boot, from /proc/stat's cpu line."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


@dataclass
class Span:
    """One repetition's stretch of time: stamps its rows with load1 and the steal share."""

    total: int
    steal: int

    @classmethod
    def start(cls) -> Span:
        return cls(*_cpu_times())

    def stamp(self, rows: list) -> None:
        total, steal = _cpu_times()
        share = (steal - self.steal) / (total - self.total) if total > self.total else 0.0
        load1 = os.getloadavg()[0]
        for row in rows:
            row.load1, row.steal = load1, share


def virtualisation() -> str:
    """systemd-detect-virt's answer ("none", "kvm", "docker", ...), else what /proc shows."""
    try:
        proc = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True, check=False, timeout=10)
        if proc.stdout.strip():
            return proc.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    with open("/proc/cpuinfo") as f:
        return "hypervisor (cpuinfo flag)" if " hypervisor" in f.read() else "unknown"


def governors() -> dict[str, str] | str:
    """Each CPU's cpufreq scaling governor, or why none could be read."""
    found = {}
    for path in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")):
        try:
            with open(path) as f:
                found[path.split("/")[5]] = f.read().strip()
        except OSError:
            continue
    return found or "not readable (no cpufreq in /sys: a VM or container without frequency scaling)"

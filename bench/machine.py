"""Facts about the machine and software a run was made on, for run.json.

Numbers from different machines, kernels or package versions are not comparable; the
record lets a reader (and `bench compare`) see when two runs differ in more than code.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

from engine.system import host

from . import environment

PACKAGES = ("strata", "pandas", "pyarrow", "numpy", "matplotlib", "rich", "btrfsutil", "pytest-benchmark", "pyfuse3")
DEBIAN_PACKAGES = ("btrfs-progs", "xfsprogs", "e2fsprogs", "runc", "crun", "busybox-static", "fio", "libfuse3-3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return -1


def machine() -> dict[str, object]:
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "arch": platform.machine(),
        "os": host.os_name(),
        "virtualisation": environment.virtualisation(),
        "cpu_governor": environment.governors(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
    }



def packages() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *DEBIAN_PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        name, _, version = line.partition(" ")
        found[f"deb:{name}"] = version or "not installed"
    return found


def git_commit() -> str:
    proc = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    commit = proc.stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain"], capture_output=True, text=True, check=False)
    return commit + ("-dirty" if dirty.stdout.strip() else "")

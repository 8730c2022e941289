"""Result directories with known truth, written through bench.results like a real run.

Each group's timings are log-normal around a fixed median per driver and step, so a test
knows exactly which groups differ between two sets (and by how much).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from bench import results
from bench.config import RunConfig

STEPS = {  # scenario -> (step, execdriver, depth) and the median seconds they scatter around
    "layer-create": [("chain:create+apply_diff", "", 1, 0.050), ("chain:create", "", 1, 0.002)],
    "rootfs": [
        ("create_read_write+get", "", 1, 0.004),
        ("create_read_write+get", "", 8, 0.009),
        ("put", "", 1, 0.001),
        ("put", "", 8, 0.0012),
    ],
    "exec": [("true", "oci", 2, 0.030), ("true", "native", 2, 0.015)],
}
DRIVER_FACTOR = {"vfs": 3.0, "overlay2": 1.0, "btrfs": 1.5}
MACHINE = {
    "hostname": "bench-host",
    "cpu_model": "Synthetic CPU @ 3.0GHz",
    "cores": 2,
    "memory_bytes": 8 << 30,
    "kernel": "6.1.0-synthetic",
    "arch": "x86_64",
    "os": "Debian GNU/Linux 12",
}


def write_run(
    directory: str,
    *,
    drivers: tuple[str, ...] = ("vfs", "overlay2"),
    n: int = 20,
    seed: int = 0,
    sigma: float = 0.15,
    slower: dict[tuple[str, str, int, str], float] | None = None,
    without: frozenset[tuple[str, str, int, str]] = frozenset(),
    config: dict[str, object] | None = None,
    machine: dict[str, object] | None = None,
    run_id: str = "20260101T000000Z-0000",
    commit: str = "0" * 40,
    started: str = "2026-01-01T00:00:00+00:00",
    hosts: dict[str, float] | None = None,
    systems: dict[str, float] | None = None,
    filesystems: dict[str, float] | None = None,
) -> str:
    """Write a result directory; `slower` maps (driver, step, depth, execdriver) to a factor,
    and groups in `without` are left out. `hosts` (name -> factor) makes a cluster run: every
    group on each host, that much slower there, and run.json's `hosts`. `systems` (strata or
    a peer -> factor) and `filesystems` (backing filesystem -> factor; `slower` keys may then
    end in the filesystem) measure every group once per system and filesystem."""
    rng = np.random.default_rng(seed)
    slower = slower or {}
    settings = RunConfig(drivers=list(drivers), scenarios=list(STEPS), depths=(1, 8), repeat=n, quick=True)
    rows = []
    places = itertools.product(
        (hosts or {"": 1.0}).items(), (systems or {results.STRATA: 1.0}).items(), (filesystems or {"": 1.0}).items()
    )
    for ((host, host_factor), (system, system_factor), (fs, fs_factor)), driver in itertools.product(places, drivers):
        for scenario, steps in STEPS.items():
            for step, execdriver, depth, median in steps:
                group = (driver, step, depth, execdriver)
                if group in without:
                    continue
                change = slower.get(group, 1.0) * slower.get((*group, fs), 1.0)
                factor = DRIVER_FACTOR[driver] * change * host_factor * system_factor * fs_factor
                for i, seconds in enumerate(rng.lognormal(math.log(median * factor), sigma, n)):
                    rows.append(
                        results.Row(
                            run_id=run_id,
                            driver=driver,
                            backend=driver,
                            backing_fs=fs or ("btrfs" if driver == "btrfs" else "ext4"),
                            scenario=scenario,
                            step=step,
                            workload="busybox",
                            layer=-1,
                            depth=depth,
                            repetition=i,
                            seconds=float(seconds),
                            execdriver=execdriver,
                            host=host,
                            system=system,
                            worker=f"tcp://{host}:1234" if host else "local",
                        )
                    )
    run = {
        "schema_version": results.SCHEMA_VERSION,
        "run_id": run_id,
        "command_line": "bench run (synthetic)",
        "started": started,
        "git_commit": commit,
        "machine": {**MACHINE, **(machine or {})},
        "packages": {"python": "3.11.2"},
        "config": {**settings.facts(), **(config or {})},
        "drivers": {d: {"status": "ok", "backing": {"fstype": "btrfs" if d == "btrfs" else "ext4"}} for d in drivers},
        "warnings": [],
    }
    if hosts:
        run["hosts"] = {
            h: {"machine": {**MACHINE, "hostname": h, "cores": 2 + i}, "packages": {}, "workers": [f"tcp://{h}:1234"]}
            for i, h in enumerate(hosts)
        }
    results.write(directory, rows, run)
    return directory

"""Container start-to-exit against the bare OCI runtime, side by side in one run.

Group `exec-<driver>` (vfs, and overlay2 as the kernel copy-on-write reference when it has
landed), every contender running busybox `true` to its exit on the same ext4 loop device:

- `runc-floor`: `runc run` of a prepared bundle (rootfs already there): the floor;
- `job-oci` / `job-native`: the engine's `run` job with `rm` (create the container layer,
  mount, start, wait, unmount, remove) inside one engine process. Goal: within 2x of the floor;
- `cli-oci` / `cli-native`: `strata run --rm busybox true` as a new process, which adds
  Python start-up and opening the engine to the job.

`docker run --rm` is timed only when a `dockerd` binary exists on this machine; Debian's
docker.io is not installed here, so there is no docker contender (the summary says so).
`test_exec_interleaved` also times floor, job-oci and job-native alternating round by round
(the fair ratio on a shared machine); `test_exec_summary` prints medians and ratios. Run:

    .venv/bin/pytest tests/benchmarks/test_bench_exec.py --benchmark-enable -s \
        --benchmark-columns=min,median,max,rounds

Under `make test` (--benchmark-disable) each contender runs once, as a smoke test.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import graphdrivers
from engine.engine import Engine
from engine.execdrivers.base import ProcessSpec
from engine.execdrivers.ocispec import oci_spec, process_env
from engine.execdrivers.users import resolve
from engine.images import testimages
from graphdrivers.backing import LoopFilesystem

ROUNDS = 15
DRIVERS = [d for d in ("vfs", "overlay2") if d in graphdrivers.registered()]
CONTENDERS = ["runc-floor", "job-oci", "job-native", "cli-oci", "cli-native"]
EXECS = ("oci", "native")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEDIANS: dict[tuple[str, str], float] = {}
INTERLEAVED: dict[tuple[str, str], float] = {}


class Setup:
    """A loop-mounted ext4 with an engine root (busybox loaded) and a prepared runc bundle."""

    def __init__(self, directory: str, driver: str) -> None:
        self.driver = driver
        self.fs = LoopFilesystem(directory, "ext4", 2 << 30).create()
        self.engines: dict[str, Engine] = {}
        try:
            self._prepare()
        except BaseException:  # a half-made setup must not leave its filesystem mounted
            self.close_engines()
            self.fs.destroy()
            raise

    def _prepare(self) -> None:
        base = self.fs.mountpoint
        image = testimages.busybox(os.path.join(base, "image"))
        image_tar = testimages.write(os.path.join(base, "busybox-image.tar"), [image])
        # One root per execdriver: an engine process owns its root, and the interleaved
        # rounds need both engines open at once.
        self.roots = {name: os.path.join(base, f"root-{name}") for name in EXECS}
        for exec_name in EXECS:
            job = self.engine(exec_name).job("load", image_tar)
            assert job.run() == 0, job.stderr.getvalue()
        self.bundle = os.path.join(base, "bundle")
        rootfs = os.path.join(self.bundle, "rootfs")
        os.makedirs(rootfs)
        subprocess.run(["tar", "-xf", image.layer_files[0], "-C", rootfs], check=True)
        spec = ProcessSpec(rootfs, ["true"])
        user = resolve(rootfs, "")
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(oci_spec(spec, user, process_env(spec, user)), f)
        self.runc_root = os.path.join(base, "runc-state")
        self.serial = 0

    def engine(self, exec_name: str) -> Engine:
        if exec_name not in self.engines:
            self.engines[exec_name] = Engine(self.roots[exec_name], self.driver, {"exec.driver": exec_name})
        return self.engines[exec_name]

    def container_ids(self) -> list[str]:
        return [i for name in EXECS for i in self.engine(name).containers.ids()]

    def close_engines(self) -> None:
        for e in self.engines.values():
            e.close()
        self.engines.clear()

    def runc_floor(self) -> None:
        self.serial += 1
        subprocess.run(["runc", "--root", self.runc_root, "run", "--bundle", self.bundle, f"floor{self.serial}"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip

    def job(self, exec_name: str) -> None:
        job = self.engine(exec_name).job("run", "busybox", "true", env={"rm": "1"})
        assert job.run() == 0, job.stderr.getvalue()

    def cli(self, exec_name: str) -> None:
        self.close_engines()  # the command line opens the root itself
        cmd = [sys.executable, "-m", "engine.cli", "--root", self.roots[exec_name], "-s", self.driver, "-o",
               f"exec.driver={exec_name}", "run", "--rm", "busybox", "true"]  # fmt: skip
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.DEVNULL)

    def warm(self) -> None:
        """Open both engines (and page in their files) before a timed loop starts."""
        for exec_name in EXECS:
            self.job(exec_name)

    def close(self) -> None:
        self.close_engines()
        shutil.rmtree(self.runc_root, ignore_errors=True)
        self.fs.destroy()


@pytest.fixture(scope="module", params=DRIVERS)
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    s = Setup(str(tmp_path_factory.mktemp(f"bench-exec-{request.param}")), request.param)
    yield s
    s.close()


@pytest.mark.parametrize("contender", CONTENDERS)
def test_exec(benchmark, setup: Setup, contender: str) -> None:
    benchmark.group = f"exec-{setup.driver}"
    benchmark.extra_info.update(driver=setup.driver, contender=contender, runtime="runc")
    if contender == "runc-floor":
        run = setup.runc_floor
    else:
        kind, exec_name = contender.split("-")
        run = (lambda: setup.job(exec_name)) if kind == "job" else (lambda: setup.cli(exec_name))
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=2, iterations=1)
    if benchmark.stats is not None:
        MEDIANS[(setup.driver, contender)] = benchmark.stats.stats.median
    assert setup.container_ids() == []  # every --rm container is gone


def test_exec_interleaved(setup: Setup, request: pytest.FixtureRequest) -> None:
    """The goal's ratio, measured fairly on a shared machine: floor, job-oci and job-native
    alternate round by round, so load that comes and goes hits all three alike."""
    rounds = 1 if request.config.getoption("benchmark_disable") else ROUNDS
    setup.warm()
    runs = {"runc-floor": setup.runc_floor, "job-oci": lambda: setup.job("oci")}
    runs["job-native"] = lambda: setup.job("native")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        INTERLEAVED[(setup.driver, name)] = statistics.median(values)
    assert setup.container_ids() == []


def test_exec_summary(capsys) -> None:
    """Medians and ratios to the runc floor (printed with -s; meaningful with --benchmark-enable)."""
    lines = []
    if shutil.which("dockerd") is None:
        lines.append("docker run: not measured, no dockerd on this machine")
    for title, table in (("pytest-benchmark medians", MEDIANS), ("interleaved rounds", INTERLEAVED)):
        lines.append(title + ":")
        for driver in DRIVERS:
            floor = table.get((driver, "runc-floor"))
            for contender in CONTENDERS:
                median = table.get((driver, contender))
                if median is not None and floor:
                    lines.append(f"  {driver:9} {contender:11} {median * 1000:8.1f} ms  {median / floor:5.2f}x floor")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all(m > 0 for m in [*MEDIANS.values(), *INTERLEAVED.values()])

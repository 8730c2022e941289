"""`docker run --rm --network none busybox true` through strata's daemon, beside the same
through a private dockerd with the same storage driver (Debian's docker.io, which `make
test` installs; tests/support/dockerd.py starts it on its own socket and roots; without
the package the group holds strata alone and says so in extra_info), and `strata -H HOST
run --rm busybox true`, strata's own client of its daemon.

Both daemons are driven by the same docker CLI, so that difference is the daemon's. Rounds
alternate between the contenders to spread the shared machine's load over all of them.

Run: PYTHONPATH=$PWD /work/venv/bin/pytest tests/benchmarks/test_bench_daemon.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from engine.images import testimages
from graphdrivers.backing import LoopFilesystem
from tests.benchmarks.sidebyside import rounds_for
from tests.engine.api.conftest import REPO, Daemon, start_daemon
from tests.support import dockerd

DRIVER = "overlay2"
ROUNDS = 15


def _docker(host: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": host}
    return subprocess.run([dockerd.DOCKER, *args], env=env, capture_output=True, timeout=120)


def _strata_client(host: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "engine.cli", "-H", host, *args], env=env, capture_output=True,
                          timeout=120)


@pytest.fixture(scope="module")
def contenders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("bench-daemon")
    image = testimages.write(str(work / "busybox.tar"), [testimages.busybox(str(work / "build"))])
    fs = LoopFilesystem(str(work / "backing"), "ext4", 2 << 30).create()
    daemon: Daemon | None = None
    peer: dockerd.PrivateDockerd | None = None
    try:
        root = os.path.join(fs.mountpoint, "root")
        os.makedirs(root)
        daemon = start_daemon(root, DRIVER)
        hosts = {"strata": daemon.host}
        dockerd.require()
        peer = dockerd.PrivateDockerd(os.path.join(fs.mountpoint, "dockerd"), DRIVER).start()
        hosts["dockerd"] = peer.host
        for host in hosts.values():
            assert _docker(host, "load", "-i", image).returncode == 0
        yield hosts
    finally:
        if daemon is not None:
            daemon.stop()
        if peer is not None:
            peer.stop()
        fs.destroy()


def test_docker_run_rm_true(benchmark, contenders: dict[str, str]) -> None:
    rounds = rounds_for(benchmark, ROUNDS)
    runs = {name: (lambda host=host: _docker(host, "run", "--rm", "--network", "none", "busybox", "true"))
            for name, host in contenders.items()}
    runs["strata-client"] = lambda: _strata_client(contenders["strata"], "run", "--rm", "busybox", "true")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            done = run()
            times[name].append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr.decode()
    medians = {name: statistics.median(values) for name, values in times.items()}
    benchmark.extra_info.update({f"{name}_median_s": m for name, m in medians.items()})
    if "dockerd" in medians:
        for name in ("strata", "strata-client"):
            benchmark.extra_info[f"{name}_over_dockerd"] = medians[name] / medians["dockerd"]
    else:
        benchmark.extra_info["note"] = "docker.io is not installed: strata measured alone"
    ratios = ", ".join(f"{n}/dockerd {medians[n] / medians['dockerd']:.2f}" for n in ("strata", "strata-client")
                       if "dockerd" in medians)
    print("\nrun --rm busybox true, medians:", ", ".join(f"{n} {m * 1000:.1f} ms" for n, m in medians.items()), ratios)
    benchmark.pedantic(runs["strata-client"], rounds=1, iterations=1)

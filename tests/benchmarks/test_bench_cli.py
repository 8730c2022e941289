"""Standalone `strata --driver overlay2 run --rm busybox true` (no daemon) beside `podman
run --rm --network none busybox true` on overlay, whole processes, side by side in one run.

Both keep their storage on the same private loop-mounted ext4 and run the same busybox
image (loaded from one archive), through runc. strata runs as an installed package
would: with its bytecode cached (in a private pycache directory the warm-up round fills,
since this machine's shells set PYTHONDONTWRITEBYTECODE). podman is measured only when it
is installed (`make test` installs it). Goal (issue #21): strata <= 0.5x podman.

Run: PYTHONPATH=$PWD .venv/bin/pytest tests/benchmarks/test_bench_cli.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from engine.images import testimages
from graphdrivers.backing import LoopFilesystem
from tests.benchmarks.sidebyside import Contender, measure
from tests.engine.api.conftest import REPO
from tests.support import podman

ROUNDS = 20


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], dict[str, str], list[str] | None]]:
    work = tmp_path_factory.mktemp("bench-cli")
    image = testimages.write(str(work / "busybox.tar"), [testimages.busybox(str(work / "build"))])
    fs = LoopFilesystem(str(work / "backing"), "ext4", 1 << 30).create()
    peer = podman.PrivatePodman(os.path.join(fs.mountpoint, "podman")) if podman.available() else None
    try:
        root = os.path.join(fs.mountpoint, "strata")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=REPO, PYTHONPYCACHEPREFIX=str(work / "pycache"))
        strata = [sys.executable, "-m", "engine.cli", "--root", root, "--driver", "overlay2"]
        subprocess.run([*strata, "load", "-i", image], env=env, check=True, capture_output=True)
        if peer is not None:
            peer.podman("load", "-i", image)
        yield strata, env, peer.command("run", "--rm", "--network", "none", "busybox", "true") if peer else None
    finally:
        if peer is not None:
            peer.remove()
        fs.destroy()


def test_run_rm_true_standalone(benchmark, setup) -> None:
    strata, env, podman_run = setup

    def check(argv: list[str], env: dict[str, str] | None = None) -> None:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()

    contenders = [Contender("strata", lambda: check([*strata, "run", "--rm", "busybox", "true"], env))]
    if podman_run is not None:
        contenders.append(Contender("podman", lambda: check(podman_run)))
    benchmark.extra_info["command"] = " ".join(strata[1:]) + " run --rm busybox true"
    measure(benchmark, contenders, rounds=ROUNDS, reference="podman", goal=0.5)

"""Standalone `strata --driver overlay2 run --rm busybox true` (no daemon) beside `podman
run --rm --network none busybox true` on overlay, whole processes, side by side in one run.

Both keep their storage on the same private loop-mounted ext4 and run the same busybox
image (loaded from one archive), through runc. strata runs as an installed package
would, with its bytecode cached (sidebyside.strata_command). podman is measured only when it
is installed (`make test` installs it). Goal (issue #21): strata <= 0.5x podman.

Run: PYTHONPATH=$PWD .venv/bin/pytest tests/benchmarks/test_bench_cli.py --benchmark-enable -s
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from engine.images import testimages
from graphdrivers.backing import LoopFilesystem
from tests.benchmarks.sidebyside import Contender, check, measure, strata_command
from tests.support import podman

ROUNDS = 20


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[str], dict[str, str], tuple[list[str], dict[str, str]]]]:
    podman.require()
    work = tmp_path_factory.mktemp("bench-cli")
    image = testimages.write(str(work / "busybox.tar"), [testimages.busybox(str(work / "build"))])
    fs = LoopFilesystem(str(work / "backing"), "ext4", 1 << 30).create()
    peer = None
    try:
        peer = podman.PrivatePodman(os.path.join(fs.mountpoint, "podman"))
        strata, env = strata_command(str(work / "pycache"), "--root", os.path.join(fs.mountpoint, "strata"),
                                     "--driver", "overlay2")
        check([*strata, "load", "-i", image], env)
        peer.podman("load", "-i", image)
        yield strata, env, (peer.command("run", "--rm", "--network", "none", "busybox", "true"), peer.env)
    finally:
        if peer is not None:
            peer.remove()
        fs.destroy()


def test_run_rm_true_standalone(benchmark, setup) -> None:
    strata, env, podman_run = setup
    contenders = [Contender("strata", lambda: check([*strata, "run", "--rm", "busybox", "true"], env)),
                  Contender("podman", lambda: check(*podman_run))]
    benchmark.extra_info["command"] = " ".join(strata[1:]) + " run --rm busybox true"
    measure(benchmark, contenders, rounds=ROUNDS, reference="podman", goal=0.5)

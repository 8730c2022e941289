"""`strata pull` beside `docker pull` of the same 4-layer 107 MB image (busybox, 1,000 small
files, a 100 MB file, a deletion) from the same loopback registry (Debian's
docker-registry, tests/support/registry_server.py), whole commands, side by side in one
run.

strata (overlay2, bytecode cached as installed) and a private dockerd (overlay2,
tests/support/dockerd.py, only when docker.io is installed) keep their storage on one
private loop-mounted ext4. Before each round the pulled image is removed from both
(untimed), so every round downloads and applies all four layers. Page caches are not
dropped (the machine is shared): the registry's blobs are warm for both alike.
Goal (issue #21): strata <= 0.5x docker pull.

Run: PYTHONPATH=$PWD .venv/bin/pytest tests/benchmarks/test_bench_pull.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from engine.engine import Engine
from engine.images import testimages
from graphdrivers.backing import LoopFilesystem
from tests.benchmarks.sidebyside import Contender, check, measure, strata_command
from tests.support import dockerd
from tests.support.registry_server import RegistryServer

ROUNDS = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[Contender]]]:
    work = tmp_path_factory.mktemp("bench-pull")
    base, multi = testimages.multilayer(str(work / "build"))
    image = testimages.write(str(work / "multi.tar"), [base, multi])
    fs = LoopFilesystem(str(work / "backing"), "ext4", 3 << 30).create()
    peer = None
    try:
        with RegistryServer(str(work / "registry")) as registry:
            remote = f"{registry.host}/bench/multi:v1"
            with Engine(os.path.join(fs.mountpoint, "source"), "overlay2") as source:
                source.job("load", image).run(check=True)
                source.job("tag", "strata/multi:latest", remote).run(check=True)
                source.job("push", remote).run(check=True)
            strata, env = strata_command(str(work / "pycache"), "--root", os.path.join(fs.mountpoint, "strata"),
                                         "--driver", "overlay2")
            contenders = [Contender("strata", lambda: check([*strata, "pull", remote], env),
                                    lambda: _strata_rmi(strata, env, remote))]
            dockerd.require()
            peer = dockerd.PrivateDockerd(os.path.join(fs.mountpoint, "dockerd")).start()
            contenders.append(Contender("dockerd", lambda: peer.docker("pull", remote),
                                        lambda: peer.docker("rmi", remote, check=False)))
            yield remote, " ".join(strata[1:]) + f" pull {remote}", contenders
    finally:
        if peer is not None:
            peer.stop()
        fs.destroy()


def _strata_rmi(strata: list[str], env: dict[str, str], remote: str) -> None:
    """Remove the pulled image (and so its layers) if a previous round left it."""
    subprocess.run([*strata, "rmi", remote], env=env, capture_output=True)


def test_pull_107MB(benchmark, setup) -> None:
    _, command, contenders = setup
    benchmark.extra_info["command"] = command
    measure(benchmark, contenders, rounds=ROUNDS, reference="dockerd", goal=0.5)

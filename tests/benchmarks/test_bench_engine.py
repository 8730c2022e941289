"""`load` of the 3-layer 100 MB test image (busybox + 1,000 small files + a 100 MB file +
deletions), per driver, beside reference points measured in the same run.

- `strata load` on vfs and on one copy-on-write driver (overlay2, else btrfs), each on
  the backing filesystem it registered for; every round loads into a root that holds
  none of the layers (the previous round's images are removed in untimed setup).
- `docker load` of the same archive into a private dockerd (Debian's docker.io, which
  `make test` installs; tests/support/dockerd.py) that this module starts with overlay2
  on its own loop-mounted ext4; without docker.io the group holds ours and the floor
  below, and says so in extra_info. Its images are removed between rounds, as ours are.
- the floor: GNU `tar -x` of the same three layer tars into one directory on the same
  filesystem, with no digests, no whiteouts and no bookkeeping.

Run: PYTHONPATH=$PWD /work/venv/bin/pytest tests/benchmarks/test_bench_engine.py --benchmark-enable
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

import graphdrivers
from engine.engine import Engine
from engine.images import testimages
from graphdrivers.backing import LoopFilesystem
from tests.support import dockerd

ROUNDS = 5
COW = [n for n in ("overlay2", "btrfs") if n in graphdrivers.registered()][:1]


NOTE = "docker load measured side by side"


SALT = f"bench-engine-{os.getpid()}-{time.time_ns()}"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, testimages.BuiltImage]:
    work = str(tmp_path_factory.mktemp("bench-engine-image"))
    base, multi = testimages.multilayer(work, salt=SALT)
    base.tags, multi.tags = [f"strata-bench/busybox:{SALT}"], [f"strata-bench/multi:{SALT}"]
    return testimages.write(os.path.join(work, "multi-save.tar"), [base, multi]), multi


@pytest.fixture
def backing(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    with LoopFilesystem(str(tmp_path), request.param, 2 << 30) as fs:
        yield fs.mountpoint


def _engine_load(benchmark, root: str, driver: str, path: str, multi: testimages.BuiltImage) -> None:
    with Engine(root, driver) as engine:
        def reset() -> None:  # the top image first: removing it prunes its untagged parents
            while images := engine.graph.images():
                engine.graph.delete(max(images, key=lambda i: len(i.layers)).id, force=True)
            assert engine.graph.layers() == []

        def load() -> None:
            engine.job("load", path).run(check=True)

        benchmark.pedantic(load, setup=reset, rounds=ROUNDS, warmup_rounds=1)
        assert engine.graph.get_image(multi.tags[0]).id == multi.id
    benchmark.extra_info.update(driver=driver, note=NOTE)


@pytest.mark.benchmark(group="engine-load-100MB")
@pytest.mark.parametrize(("driver", "backing"), [("vfs", "ext4")] + [(c, graphdrivers.registration(c).backing_fs)
                                                                      for c in COW], indirect=["backing"])
def test_strata_load(benchmark, archive, driver: str, backing: str) -> None:
    path, multi = archive
    _engine_load(benchmark, os.path.join(backing, "root"), driver, path, multi)


@pytest.mark.benchmark(group="engine-load-100MB")
@pytest.mark.parametrize("backing", ["ext4"], indirect=True)
def test_tar_extract_floor(benchmark, archive, backing: str) -> None:
    _, multi = archive
    target = os.path.join(backing, "rootfs")

    def reset() -> None:
        shutil.rmtree(target, ignore_errors=True)
        os.mkdir(target)

    def extract() -> None:
        for layer in multi.layer_files:
            subprocess.run(["tar", "-xf", layer, "-C", target], check=True)

    benchmark.pedantic(extract, setup=reset, rounds=ROUNDS, warmup_rounds=1)
    assert os.path.getsize(os.path.join(target, "data/big.bin")) == 100 << 20
    benchmark.extra_info.update(note=NOTE)


@pytest.mark.benchmark(group="engine-load-100MB")
@pytest.mark.parametrize("backing", ["ext4"], indirect=True)
def test_docker_load(benchmark, archive, backing: str) -> None:
    dockerd.require()
    path, _ = archive
    with dockerd.PrivateDockerd(os.path.join(backing, "dockerd")) as peer:
        def reset() -> None:  # rmi prunes the untagged steps
            peer.docker("rmi", f"strata-bench/multi:{SALT}", f"strata-bench/busybox:{SALT}", check=False)

        def load() -> None:
            peer.docker("load", "-i", path)

        benchmark.pedantic(load, setup=reset, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info.update(driver="overlay2 (dockerd)", note=NOTE)

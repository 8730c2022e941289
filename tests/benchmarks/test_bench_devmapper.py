"""devmapper (reflink pool) against the bare kernel operations it is built from, side by
side in one run on the same xfs (reflink=1) loop filesystem.

- group `devmapper-create`: `create` of a snapshot of a layer holding 20 MB of data and
  200 small files, against a bare FICLONE of the same device file. The driver adds the
  free-space check, the transaction record and the layer's metadata. Goal: within 1.5x.
- group `devmapper-getput`: `get` + `put` of that layer (loop attach, mount, syncfs,
  umount) against a bare `losetup -f --show` + `mount -o nouuid` + `umount` +
  `losetup -d` of the same device file with the CLI tools, and against the same steps
  made with ioctls and mount(2) (the floor). Goal: within 1.5x of the CLI variant.

Run:

    .venv/bin/pytest tests/benchmarks/test_bench_devmapper.py --benchmark-enable \
        --benchmark-columns=min,median,max,rounds

Under `make test` (--benchmark-disable) each case runs once, as a smoke test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

import graphdrivers
from graphdrivers import loopdev, mountutil
from graphdrivers.backing import LoopFilesystem
from graphdrivers.devmapper.reflinkpool import clone

CREATE_ROUNDS = 60
MOUNT_ROUNDS = 40


class Bench:
    def __init__(self, directory: str) -> None:
        self.fs = LoopFilesystem(directory, "xfs").create()
        root = os.path.join(self.fs.mountpoint, "root")
        os.mkdir(root)
        self.driver = graphdrivers.get_driver("devmapper", root=root)
        self.driver.create("img")
        rootfs = self.driver.get("img")
        with open(os.path.join(rootfs, "data"), "wb") as f:
            for _ in range(20):
                f.write(os.urandom(1 << 20))
        for i in range(200):
            with open(os.path.join(rootfs, f"small{i}"), "wb") as f:
                f.write(os.urandom(100 + i * 13))
        self.driver.put("img")
        self.device_file = self.driver.metadata("img")["DeviceFile"]
        self.scratch = os.path.join(self.fs.mountpoint, "scratch")
        os.mkdir(self.scratch)
        self.mnt = os.path.join(self.fs.mountpoint, "bare-mnt")
        os.mkdir(self.mnt)
        self.serial = 0

    def fresh(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def close(self) -> None:
        self.driver.cleanup()
        self.fs.destroy()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    b = Bench(str(tmp_path_factory.mktemp("bench-devmapper")))
    yield b
    b.close()


def _fresh_each_round(benchmark, target: Callable[[str], object], make: Callable[[], str], undo) -> None:
    """Time `target(name)` on a fresh name each round; `undo` removes them all afterwards
    (not between rounds: xfs frees a removed file's extents in the background, which
    would land in the next round's timing)."""
    made: list[str] = []

    def setup() -> tuple[tuple[str], dict]:
        made.append(make())
        return (made[-1],), {}

    benchmark.pedantic(target, setup=setup, rounds=CREATE_ROUNDS, iterations=1)
    for name in made:
        undo(name)


@pytest.mark.benchmark(group="devmapper-create")
def test_devmapper_create_snapshot(benchmark, bench: Bench) -> None:
    d = bench.driver
    _fresh_each_round(benchmark, lambda layer: d.create(layer, "img"), lambda: bench.fresh("snap"), d.remove)
    d.create("check", "img")
    assert os.path.getsize(os.path.join(d.get("check"), "data")) == 20 << 20
    d.put("check")
    d.remove("check")


@pytest.mark.benchmark(group="devmapper-create")
def test_bare_ficlone(benchmark, bench: Bench) -> None:
    _fresh_each_round(
        benchmark,
        lambda target: clone(bench.device_file, target),
        lambda: os.path.join(bench.scratch, bench.fresh("clone")),
        os.unlink,
    )


@pytest.mark.benchmark(group="devmapper-getput")
def test_devmapper_get_put(benchmark, bench: Bench) -> None:
    d = bench.driver

    def get_put() -> None:
        os.stat(os.path.join(d.get("img"), "data"))
        d.put("img")

    benchmark.pedantic(get_put, rounds=MOUNT_ROUNDS, iterations=1, warmup_rounds=1)
    assert d.refcount("img") == 0


@pytest.mark.benchmark(group="devmapper-getput")
def test_bare_losetup_mount_cli(benchmark, bench: Bench) -> None:
    def cli() -> None:
        dev = subprocess.run(
            ["losetup", "-f", "--show", bench.device_file], capture_output=True, text=True, check=True
        ).stdout.strip()
        try:
            subprocess.run(["mount", "-o", "nouuid", dev, bench.mnt], check=True)
            os.stat(os.path.join(bench.mnt, "rootfs", "data"))
            subprocess.run(["umount", bench.mnt], check=True)
        finally:
            subprocess.run(["losetup", "-d", dev], check=True)

    benchmark.pedantic(cli, rounds=MOUNT_ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="devmapper-getput")
def test_bare_loop_mount_ioctl(benchmark, bench: Bench) -> None:
    def ioctl() -> None:
        with loopdev.attach(bench.device_file) as loop:
            mountutil.mount(loop.path, bench.mnt, "xfs", 0, "nouuid")
        os.stat(os.path.join(bench.mnt, "rootfs", "data"))
        mountutil.umount(bench.mnt)

    benchmark.pedantic(ioctl, rounds=MOUNT_ROUNDS, iterations=1, warmup_rounds=1)

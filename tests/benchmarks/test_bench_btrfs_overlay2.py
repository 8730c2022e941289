"""What the btrfs and overlay2 drivers add on top of the kernel operation they wrap.

Each group puts a driver call next to the bare kernel operation it is built on, measured
in the same run on the same filesystem, so the ratio is the driver's overhead:
- btrfs-create: `create` of a child of a layer holding 1,000 files + 100 MB, against one
  snapshot ioctl through btrfsutil (goal: within 1.5x);
- overlay2-get-put: `get` + `put` of a container layer over a 5-layer chain, against a
  bare mount(2) + umount(2) of the same directories with the same options (goal: within
  1.5x).

Run: PYTHONPATH=$PWD /work/venv/bin/pytest tests/benchmarks/test_bench_btrfs_overlay2.py --benchmark-enable
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator

import btrfsutil
import pytest

import graphdrivers
from graphdrivers import mountutil
from graphdrivers.backing import LoopFilesystem
from graphdrivers.btrfs.driver import BtrfsDriver
from graphdrivers.overlay2.driver import BASE_OPTIONS, Overlay2Driver

FILES = 1000
BIG = 100 << 20
CHAIN = 5


def _fill(path: str) -> None:
    """1,000 small files in 10 directories, and one 100 MB file."""
    for d in range(10):
        os.mkdir(os.path.join(path, f"d{d}"))
        for i in range(FILES // 10):
            with open(os.path.join(path, f"d{d}", f"f{i}"), "wb") as f:
                f.write(b"x" * 512)
    chunk = b"\xa5" * (1 << 20)
    with open(os.path.join(path, "big"), "wb") as f:
        for _ in range(BIG >> 20):
            f.write(chunk)


def _settle(path: str) -> None:
    """Commit, and wait until btrfs has cleaned up deleted subvolumes, so that one case's
    leftovers do not slow the next one down."""
    btrfsutil.sync(path)
    for _ in range(500):
        if not btrfsutil.deleted_subvolumes(path):
            return
        time.sleep(0.01)


@pytest.fixture(scope="module")
def btrfs_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BtrfsDriver, str]]:
    with LoopFilesystem(str(tmp_path_factory.mktemp("bench-btrfs")), "btrfs", 2 << 30) as fs:
        driver = graphdrivers.get_driver("btrfs", root=os.path.join(fs.mountpoint, "root"))
        try:
            driver.create("base")
            base = driver.get("base")
            _fill(base)
            _settle(base)  # the first snapshot would otherwise pay for writing 100 MB
            yield driver, base
            driver.put("base")
        finally:
            driver.cleanup()


@pytest.mark.benchmark(group="btrfs-create")
def test_btrfs_driver_create(benchmark, btrfs_base: tuple[BtrfsDriver, str]) -> None:
    driver, _ = btrfs_base
    ids = (f"child{n}" for n in itertools.count())
    made: list[str] = []

    def create() -> None:
        made.append(next(ids))
        driver.create(made[-1], "base")

    benchmark.pedantic(create, rounds=30, warmup_rounds=2)
    with driver._mounted(made[-1]) as path:
        assert os.path.getsize(os.path.join(path, "big")) == BIG
        assert len(os.listdir(os.path.join(path, "d9"))) == FILES // 10
    for layer in made:
        driver.remove(layer)
    _settle(driver.home)


@pytest.mark.benchmark(group="btrfs-create")
def test_btrfs_raw_snapshot(benchmark, btrfs_base: tuple[BtrfsDriver, str]) -> None:
    driver, base = btrfs_base
    targets = (os.path.join(driver.home, f"raw{n}") for n in itertools.count())
    made: list[str] = []

    def snapshot() -> None:
        made.append(next(targets))
        btrfsutil.create_snapshot(base, made[-1])

    benchmark.pedantic(snapshot, rounds=30, warmup_rounds=2)
    for path in made:
        btrfsutil.delete_subvolume(path)
    _settle(driver.home)


@pytest.fixture(scope="module")
def overlay_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overlay2Driver]:
    with LoopFilesystem(str(tmp_path_factory.mktemp("bench-overlay2")), "ext4", 256 << 20) as fs:
        driver = graphdrivers.get_driver("overlay2", root=os.path.join(fs.mountpoint, "root"))
        try:
            parent = None
            for i in range(CHAIN):
                driver.create(f"layer{i}", parent)
                with open(os.path.join(driver.home, f"layer{i}", "diff", f"file{i}"), "w") as f:
                    f.write(f"layer {i}\n")
                parent = f"layer{i}"
            driver.create_read_write("container", parent)
            yield driver
        finally:
            driver.cleanup()


@pytest.mark.benchmark(group="overlay2-get-put")
def test_overlay2_driver_get_put(benchmark, overlay_chain: Overlay2Driver) -> None:
    def get_put() -> None:
        overlay_chain.get("container")
        overlay_chain.put("container")

    benchmark.pedantic(get_put, rounds=200, warmup_rounds=5)
    with overlay_chain._mounted("container") as path:
        assert sorted(os.listdir(path)) == [f"file{i}" for i in range(CHAIN)]


@pytest.mark.benchmark(group="overlay2-get-put")
def test_overlay2_bare_mount_umount(benchmark, overlay_chain: Overlay2Driver) -> None:
    meta = overlay_chain.metadata("container")
    data = f"{BASE_OPTIONS},lowerdir={meta['LowerDir']},upperdir={meta['UpperDir']},workdir={meta['WorkDir']}"
    target = meta["MergedDir"]

    def mount_umount() -> None:
        mountutil.mount("overlay", target, "overlay", 0, data)
        mountutil.umount(target)

    benchmark.pedantic(mount_umount, rounds=200, warmup_rounds=5)
    assert not mountutil.is_mountpoint(target)

"""aufs with the FUSE backend (strata-aufs; NOT kernel aufs), side by side with a kernel
overlay mount of the very same branches.

- `get` latency of a container layer over a 5-layer chain (goal: under 100 ms);
- sequential read of a 100 MB file of a lower layer: cold (page cache of the union and
  of the branch dropped before each round) and warm (goal: within 2x of overlay), both
  with file data passed through to the branch by the kernel (the default) and served by
  the FUSE process (`aufs.fuse_passthrough=false`, a second driver with the same layers);
- a `find` walk that stats 10,000 files spread over the 5 layers (same goal): on a
  fresh mount ("first") and again on a mount that has been walked ("cached").

Run (figures are medians; FUSE/overlay ratios in the closing note of issue 4):
    PYTHONPATH=. pytest tests/benchmarks/test_bench_aufs.py --benchmark-enable
With benchmarks disabled (`make test`) each case runs once on a small data set.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import graphdrivers
from graphdrivers import mountutil
from graphdrivers.aufs.driver import AufsDriver
from graphdrivers.backing import LoopFilesystem

LAYERS = 5


def _disabled(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable")) and not config.getoption("benchmark_enable")


@dataclass
class Setup:
    driver: AufsDriver
    fuse: str  # the container's union through FUSE, file data passed through
    served: str  # the same layers through a FUSE mount that serves file data itself
    overlay: str  # an overlay mount of the first union's branches
    lower_big: dict[str, str]  # mount -> the branch file behind its "big"
    remount_fuse: Callable[[], None]
    remount_overlay: Callable[[], None]
    big_size: int
    files: int


def _build(driver: AufsDriver, big_size: int, files: int) -> str:
    """The 5 layers and a container over them; returns the container's mount."""
    parent = None
    for i in range(LAYERS):
        layer = f"layer{i}"
        driver.create(layer, parent)
        diff = driver.metadata(layer)["DiffDir"]
        if i == 0:
            with open(os.path.join(diff, "big"), "wb") as f:
                for _ in range(big_size >> 20):
                    f.write(os.urandom(1 << 20))
        for n in range(i, files, LAYERS):  # every layer adds its share of the tree
            d = os.path.join(diff, "tree", f"d{n % 100:02d}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"f{n}"), "wb") as f:
                f.write(b"x" * (n % 512))
        parent = layer
    driver.create_read_write("ctr", parent)
    return driver.get("ctr")


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    small = _disabled(request.config)
    big_size = (8 if small else 100) << 20
    files = 500 if small else 10_000
    base = tempfile.mkdtemp(prefix="bench-aufs-")
    fs = LoopFilesystem(base, "ext4", 3 << 30).create()
    drivers: list[AufsDriver] = []
    try:
        for name, passthrough in (("root", "true"), ("served", "false")):
            options = {"aufs.backend": "fuse", "aufs.fuse_passthrough": passthrough}
            driver = graphdrivers.get_driver("aufs", root=os.path.join(fs.mountpoint, name), options=options)
            assert isinstance(driver, AufsDriver)
            drivers.append(driver)
        fuse, served = (_build(d, big_size, files) for d in drivers)
        overlay = os.path.join(fs.mountpoint, "overlay")
        for sub in ("upper", "work", "merged"):
            os.makedirs(os.path.join(overlay, sub))
        branches = drivers[0].branches("ctr")
        options = f"lowerdir={':'.join(branches[1:])},upperdir={overlay}/upper,workdir={overlay}/work"
        merged = f"{overlay}/merged"

        def remount_overlay() -> None:
            mountutil.umount_retry(merged)
            mountutil.mount("overlay", merged, "overlay", 0, options)

        def remount_fuse() -> None:
            drivers[0].put("ctr")
            drivers[0].get("ctr")

        mountutil.mount("overlay", merged, "overlay", 0, options)
        first, second = (os.path.join(d.metadata("layer0")["DiffDir"], "big") for d in drivers)
        lower_big = {fuse: first, merged: first, served: second}
        try:
            yield Setup(drivers[0], fuse, served, merged, lower_big, remount_fuse, remount_overlay, big_size, files)
        finally:
            mountutil.umount_retry(merged)
            for d in drivers:
                d.put("ctr")
    finally:
        for d in drivers:
            d.cleanup()
        fs.destroy()
        os.rmdir(base)


def _drop_cache(*paths: str) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _read_all(path: str) -> int:
    total, buf = 0, bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def _bench_read(benchmark, s: Setup, mount: str, *, cold: bool) -> None:
    lower = s.lower_big[mount]
    target = os.path.join(mount, "big")
    setup = (lambda: _drop_cache(target, lower)) if cold else None
    n = benchmark.pedantic(_read_all, args=(target,), setup=setup, rounds=7, warmup_rounds=1)
    assert n == s.big_size


@pytest.mark.benchmark(group="aufs-seq-read-100MB-cold")
def test_bench_read_cold_fuse(benchmark, setup: Setup) -> None:
    _bench_read(benchmark, setup, setup.fuse, cold=True)


@pytest.mark.benchmark(group="aufs-seq-read-100MB-cold")
def test_bench_read_cold_overlay(benchmark, setup: Setup) -> None:
    _bench_read(benchmark, setup, setup.overlay, cold=True)


@pytest.mark.benchmark(group="aufs-seq-read-100MB-cold")
def test_bench_read_cold_fuse_served(benchmark, setup: Setup) -> None:
    _bench_read(benchmark, setup, setup.served, cold=True)


@pytest.mark.benchmark(group="aufs-seq-read-100MB-warm")
def test_bench_read_warm_fuse(benchmark, setup: Setup) -> None:
    _bench_read(benchmark, setup, setup.fuse, cold=False)


@pytest.mark.benchmark(group="aufs-seq-read-100MB-warm")
def test_bench_read_warm_fuse_served(benchmark, setup: Setup) -> None:
    """Lower-branch files keep their page cache across opens (keep_cache)."""
    _bench_read(benchmark, setup, setup.served, cold=False)


@pytest.mark.benchmark(group="aufs-seq-read-100MB-warm")
def test_bench_read_warm_overlay(benchmark, setup: Setup) -> None:
    _bench_read(benchmark, setup, setup.overlay, cold=False)


def _walk(root: str) -> int:
    out = subprocess.run(["find", root, "-type", "f", "-printf", "%i %s\n"], capture_output=True, check=True)
    return out.stdout.count(b"\n")


@pytest.mark.benchmark(group="aufs-find-stat-10k-first")
def test_bench_first_walk_fuse(benchmark, setup: Setup) -> None:
    """Each round walks a fresh mount: every listing and attribute comes from the process."""
    tree = os.path.join(setup.fuse, "tree")
    n = benchmark.pedantic(_walk, args=(tree,), setup=setup.remount_fuse, rounds=7, warmup_rounds=1)
    assert n == setup.files


@pytest.mark.benchmark(group="aufs-find-stat-10k-first")
def test_bench_first_walk_overlay(benchmark, setup: Setup) -> None:
    tree = os.path.join(setup.overlay, "tree")
    n = benchmark.pedantic(_walk, args=(tree,), setup=setup.remount_overlay, rounds=7, warmup_rounds=1)
    assert n == setup.files


@pytest.mark.benchmark(group="aufs-find-stat-10k-cached")
def test_bench_walk_fuse(benchmark, setup: Setup) -> None:
    n = benchmark.pedantic(_walk, args=(os.path.join(setup.fuse, "tree"),), rounds=7, warmup_rounds=1)
    assert n == setup.files


@pytest.mark.benchmark(group="aufs-find-stat-10k-cached")
def test_bench_walk_overlay(benchmark, setup: Setup) -> None:
    n = benchmark.pedantic(_walk, args=(os.path.join(setup.overlay, "tree"),), rounds=7, warmup_rounds=1)
    assert n == setup.files


@pytest.mark.benchmark(group="aufs-get-5-layers")
def test_bench_get_5_layer_chain(benchmark, setup: Setup) -> None:
    """create_read_write once; each round mounts it (`get` returns once the mount answers)."""
    d = setup.driver
    d.create_read_write("get-ctr", "layer4")
    mounted: list[str] = []

    def release() -> None:
        while mounted:
            d.put(mounted.pop())

    def get() -> str:
        path = d.get("get-ctr")
        mounted.append("get-ctr")
        return path

    try:
        path = benchmark.pedantic(get, setup=release, rounds=15, warmup_rounds=1)
        assert os.path.getsize(os.path.join(path, "big")) == setup.big_size
    finally:
        release()
        d.remove("get-ctr")

"""vfs against the tools it replaces, side by side in one run on the same ext4 loop device.

- group `vfs-create`: `create` of a child of a parent holding 1,000 small files in nested
  directories and one 100 MB file, with copy_file_range and with `vfs.copy=full`,
  against `cp -a --reflink=never` of the same tree. Goal: vfs within 1.3x of cp.
- group `vfs-apply`: `apply_diff` of a 1,000-file layer tar into an empty layer against
  GNU `tar -x` of the same tar into an empty directory. Goal: within 1.5x of tar.

The page cache is warm for every contender (the trees were just written). Run:

    .venv/bin/pytest tests/benchmarks/test_bench_vfs.py --benchmark-enable --benchmark-columns=min,median,max,rounds

Under `make test` (--benchmark-disable) each case runs once, as a smoke test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator

import pytest

import graphdrivers
from graphdrivers.backing import LoopFilesystem

SMALL_FILES = 1000
BIG_FILE = 100 << 20
ROUNDS = 15


def _small_tree(path: str) -> None:
    """1,000 files of 100 B - 4 KB, spread over 20 x 7 nested directories."""
    for i in range(SMALL_FILES):
        sub = os.path.join(path, f"d{i % 20}", f"e{i % 7}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i}"), "wb") as f:
            f.write(os.urandom(100 + (i * 37) % 4000))


class Bench:
    """An ext4 loop filesystem holding a vfs root with the parent layer and a layer tar."""

    def __init__(self, directory: str) -> None:
        self.fs = LoopFilesystem(directory, "ext4", 4 << 30).create()
        self.root = os.path.join(self.fs.mountpoint, "root")
        os.mkdir(self.root)
        self.scratch = os.path.join(self.fs.mountpoint, "scratch")
        os.mkdir(self.scratch)
        self.drivers = {
            method: graphdrivers.get_driver("vfs", root=self.root, options={"vfs.copy": method})
            for method in ("copy_file_range", "full")
        }
        vfs = self.drivers["copy_file_range"]
        vfs.create("parent")
        self.parent = vfs.get("parent")
        _small_tree(self.parent)
        with open(os.path.join(self.parent, "big"), "wb") as f:
            for _ in range(BIG_FILE >> 20):
                f.write(os.urandom(1 << 20))
        self.tar = os.path.join(self.fs.mountpoint, "layer.tar")
        small = os.path.join(self.scratch, "small")
        _small_tree(small)
        with tarfile.open(self.tar, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(small)):
                tar.add(os.path.join(small, name), arcname=name)
        shutil.rmtree(small)
        os.sync()
        self.serial = 0

    def fresh(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def close(self) -> None:
        for d in self.drivers.values():
            d.cleanup()
        self.fs.destroy()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    b = Bench(str(tmp_path_factory.mktemp("bench-vfs")))
    yield b
    b.close()


def _run(benchmark, target: Callable[[str], object], make: Callable[[], str], undo: Callable[[str], None]) -> None:
    """Time `target(name)` on a fresh name each round; `undo` removes it outside the timing."""
    made: list[str] = []

    def setup() -> tuple[tuple[str], dict]:
        while made:
            undo(made.pop())
        name = make()
        made.append(name)
        return (name,), {}

    benchmark.pedantic(target, setup=setup, rounds=ROUNDS, iterations=1)
    while made:
        undo(made.pop())


@pytest.mark.benchmark(group="vfs-create")
@pytest.mark.parametrize("method", ["copy_file_range", "full"])
def test_vfs_create(benchmark, bench: Bench, method: str) -> None:
    vfs = bench.drivers[method]
    _run(benchmark, lambda layer: vfs.create(layer, "parent"), lambda: bench.fresh("child"), vfs.remove)
    vfs.create("check", "parent")
    with open(os.path.join(vfs.get("check"), "big"), "rb") as f, open(os.path.join(bench.parent, "big"), "rb") as g:
        assert f.read() == g.read()
    vfs.put("check")
    vfs.remove("check")


@pytest.mark.benchmark(group="vfs-create")
def test_cp_a_reflink_never(benchmark, bench: Bench) -> None:
    def cp(target: str) -> None:
        subprocess.run(["cp", "-a", "--reflink=never", bench.parent, target], check=True)

    _run(benchmark, cp, lambda: os.path.join(bench.scratch, bench.fresh("cp")), shutil.rmtree)


@pytest.mark.benchmark(group="vfs-apply")
def test_vfs_apply_diff(benchmark, bench: Bench) -> None:
    vfs = bench.drivers["copy_file_range"]

    def make() -> str:
        layer = bench.fresh("applied")
        vfs.create(layer)
        return layer

    def apply(layer: str) -> int:
        with open(bench.tar, "rb") as stream:
            return vfs.apply_diff(layer, None, stream)

    _run(benchmark, apply, make, vfs.remove)
    vfs.create("check-apply")
    with open(bench.tar, "rb") as stream:
        size = vfs.apply_diff("check-apply", None, stream)
    with tarfile.open(bench.tar) as tar:
        assert size == sum(m.size for m in tar.getmembers() if m.isfile())
    vfs.remove("check-apply")


@pytest.mark.benchmark(group="vfs-apply")
def test_gnu_tar_x(benchmark, bench: Bench) -> None:
    def make() -> str:
        target = os.path.join(bench.scratch, bench.fresh("tar"))
        os.mkdir(target)
        return target

    def untar(target: str) -> None:
        subprocess.run(["tar", "-x", "-f", bench.tar, "-C", target], check=True)

    _run(benchmark, untar, make, shutil.rmtree)

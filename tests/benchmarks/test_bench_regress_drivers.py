"""Driver regression benchmarks: the contract's hot paths, for every registered driver.

Run before a driver change lands (`make bench-regress` saves each run under .benchmarks/
and compares with the previous one); `make test` runs every case once, disabled, so they
keep working. Groups (one per operation, drivers side by side):

- `exists`: `exists` of a layer;
- `get-empty`: `get` + `put` of an empty layer (mount/unmount cost);
- `diff-base`: the full tar stream of a base layer of N files;
- `apply-n-files`: `apply_diff` of an N-file layer tar into a fresh layer, then its `diff`;
- `deep-read-diff`: on a layer DEPTH deep, `get` and read a file of the bottom layer, then
  `diff` against its parent.
"""

from __future__ import annotations

import io
import itertools
import os
import random
from collections.abc import Callable

import pytest

import graphdrivers
from graphdrivers.archive.build import LayerBuilder

N_FILES = 200
DEPTH = 16
ROUNDS = 15

_ids = itertools.count()


def _tar(files: int, prefix: str, seed: int) -> bytes:
    rng = random.Random(seed)
    b = LayerBuilder()
    for i in range(files):
        b.file(f"{prefix}/d{i // 50:02d}/f{i:04d}", rng.randbytes(rng.randrange(0, 4097)))
    path = io.BytesIO()
    b.write_to(path)
    return path.getvalue()


def _layer(driver: graphdrivers.Driver, parent: str | None, data: bytes | None) -> str:
    layer_id = f"l{next(_ids)}"
    driver.create(layer_id, parent)
    if data is not None:
        driver.apply_diff(layer_id, parent, io.BytesIO(data))
    return layer_id


def _drain(driver: graphdrivers.Driver, layer_id: str, parent: str | None) -> int:
    with driver.diff(layer_id, parent) as stream:
        return sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))


def _rounds(benchmark, target: Callable[[], object], setup: Callable[[], tuple] | None = None) -> object:
    return benchmark.pedantic(target, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1 if setup is None else 0)


@pytest.mark.benchmark(group="exists")
def test_exists(benchmark, driver: graphdrivers.Driver) -> None:
    base = _layer(driver, None, None)
    assert benchmark(driver.exists, base) is True


@pytest.mark.benchmark(group="get-empty")
def test_get_of_an_empty_layer(benchmark, driver: graphdrivers.Driver) -> None:
    empty = _layer(driver, None, None)

    def get_put() -> list[str]:
        path = driver.get(empty)
        try:
            return os.listdir(path)
        finally:
            driver.put(empty)

    assert _rounds(benchmark, get_put) == []
    assert driver.refcount(empty) == 0


@pytest.mark.benchmark(group="diff-base")
def test_diff_of_a_base_layer(benchmark, driver: graphdrivers.Driver) -> None:
    data = _tar(N_FILES, "base", 1)
    base = _layer(driver, None, data)
    size = _rounds(benchmark, lambda: _drain(driver, base, None))
    assert size >= len(data) - 2 * 10240  # the same files (tar padding may differ)


@pytest.mark.benchmark(group="apply-n-files")
def test_diff_and_apply_of_n_files(benchmark, driver: graphdrivers.Driver) -> None:
    base = _layer(driver, None, _tar(10, "base", 2))
    data = _tar(N_FILES, "new", 3)

    def setup() -> tuple[tuple[str], dict]:
        layer_id = f"a{next(_ids)}"
        driver.create(layer_id, base)
        return (layer_id,), {}

    def apply_then_diff(layer_id: str) -> tuple[str, int]:
        driver.apply_diff(layer_id, base, io.BytesIO(data))
        return layer_id, _drain(driver, layer_id, base)

    layer_id, size = _rounds(benchmark, apply_then_diff, setup)  # type: ignore[misc]
    assert size > 0
    assert [c.kind for c in driver.changes(layer_id, base)].count("A") >= N_FILES


@pytest.mark.benchmark(group="deep-read-diff")
def test_deep_layer_read_and_diff(benchmark, driver: graphdrivers.Driver) -> None:
    parent = None
    for i in range(DEPTH):
        b = LayerBuilder()
        b.file(f"deep/{i:03d}", f"layer {i}\n".encode())
        out = io.BytesIO()
        b.write_to(out)
        parent = _layer(driver, parent, out.getvalue())
    top = parent
    below = f"l{next(_ids)}"
    driver.create(below, top)
    driver.apply_diff(below, top, io.BytesIO(_tar(20, "top", 4)))

    def read_and_diff() -> tuple[bytes, int]:
        path = driver.get(below)
        try:
            with open(os.path.join(path, "deep/000"), "rb") as f:
                first = f.read()
        finally:
            driver.put(below)
        return first, _drain(driver, below, top)

    first, size = _rounds(benchmark, read_and_diff)  # type: ignore[misc]
    assert first == b"layer 0\n" and size > 0

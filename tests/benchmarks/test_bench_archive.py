"""apply_layer against GNU tar on the same 1,000-file layer tar, side by side.

Goal: apply_layer within 1.5x of `tar -x --numeric-owner -p` (a subprocess, so tar's
start-up is in its figure, as it would be for a caller that shells out to tar). Run:
    PYTHONPATH=. pytest tests/benchmarks/test_bench_archive.py --benchmark-enable
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import pytest

from graphdrivers.archive import apply_layer

FILES = 1000
ROUNDS = 15


@pytest.fixture(scope="module")
def layer_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    """1,000 small files (100 B - 8 KiB) in 40 directories, some hard links and symlinks."""
    base = tmp_path_factory.mktemp("bench-archive")
    src = base / "src"
    for i in range(FILES):
        d = src / f"dir{i % 40:02d}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:04d}.txt").write_bytes(os.urandom(64) * (1 + (i * 7919) % 128))
    path = str(base / "layer.tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(src), arcname=".")
    return path


def _fresh(base: str, state: dict) -> tuple[tuple, dict]:
    if "dir" in state:
        shutil.rmtree(state["dir"])
    state["n"] = state.get("n", 0) + 1
    state["dir"] = os.path.join(base, f"target{state['n']}")
    os.mkdir(state["dir"])
    return (state["dir"],), {}


@pytest.mark.benchmark(group="archive-apply-1000-files")
def test_bench_apply_layer(benchmark, layer_tar: str, tmp_path) -> None:
    state: dict = {}

    def run(target: str) -> int:
        with open(layer_tar, "rb") as f:
            return apply_layer(target, f)

    applied = benchmark.pedantic(run, setup=lambda: _fresh(str(tmp_path), state), rounds=ROUNDS, warmup_rounds=1)
    assert applied > 0
    assert sum(len(files) for _, _, files in os.walk(state["dir"])) == FILES


@pytest.mark.benchmark(group="archive-apply-1000-files")
def test_bench_gnu_tar_extract(benchmark, layer_tar: str, tmp_path) -> None:
    state: dict = {}

    def run(target: str) -> None:
        subprocess.run(["tar", "-x", "--numeric-owner", "-p", "-f", layer_tar, "-C", target], check=True)

    benchmark.pedantic(run, setup=lambda: _fresh(str(tmp_path), state), rounds=ROUNDS, warmup_rounds=1)
    assert sum(len(files) for _, _, files in os.walk(state["dir"])) == FILES

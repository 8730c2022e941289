"""apply_layer against GNU tar on the same 1,000-file layer tar, side by side.

Goal: apply_layer within 1.5x of `tar -x --numeric-owner -p` (a subprocess, so tar's
start-up is in its figure, as it would be for a caller that shells out to tar). Both
extract into fresh directories on one private loop-mounted ext4, where layers live in
practice, so neither pays for the journal commits of whatever else shares /tmp.

Two flavours of the same layer, each its own group: "docker" as Docker writes layers
(whole-second times, so plain ustar headers), and "pax" with a PAX record on every member
(sub-second times, as `tar --format=posix` or Python's tarfile write them), which doubles
the headers to parse. Run:
    PYTHONPATH=. pytest tests/benchmarks/test_bench_archive.py --benchmark-enable
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import pytest

from graphdrivers.archive import apply_layer
from graphdrivers.backing import LoopFilesystem

FILES = 1000
ROUNDS = 30
FLAVOURS = ("docker", "pax")


@pytest.fixture(scope="module")
def layer_tars(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, int]]:
    """flavour -> (tar path, entries): 1,000 small files (64 B - 8 KiB) in 40 directories,
    plus a symlink and a hard link for every 50th file."""
    base = tmp_path_factory.mktemp("bench-archive")
    src = base / "src"
    for i in range(FILES):
        d = src / f"dir{i % 40:02d}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"file{i:04d}.txt"
        f.write_bytes(os.urandom(64) * (1 + (i * 7919) % 128))
        if i % 50 == 0:
            os.symlink(f.name, d / f"link{i:04d}")
            os.link(f, d / f"hard{i:04d}")
    entries = sum(len(dirs) + len(files) for _, dirs, files in os.walk(src))

    def whole_seconds(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = int(info.mtime)
        return info

    tars = {}
    for flavour in FLAVOURS:
        path = str(base / f"{flavour}.tar")
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(str(src), arcname=".", filter=whole_seconds if flavour == "docker" else None)
        tars[flavour] = (path, entries)
    return tars


@pytest.fixture(scope="module")
def target_fs(tmp_path_factory: pytest.TempPathFactory):
    fs = LoopFilesystem(str(tmp_path_factory.mktemp("bench-archive-fs")), "ext4", 1 << 30).create()
    yield fs.mountpoint
    fs.destroy()


def _fresh(base: str, state: dict) -> tuple[tuple, dict]:
    """A new empty target per round (the previous one removed first)."""
    if "dir" in state:
        shutil.rmtree(state["dir"])
    state["n"] = state.get("n", 0) + 1
    state["dir"] = os.path.join(base, f"{state['name']}{state['n']}")
    os.mkdir(state["dir"])
    return (state["dir"],), {}


def _count(root: str) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))


def _bench(benchmark, target_fs: str, name: str, run) -> str:
    state: dict = {"name": name}
    benchmark.group = f"archive-apply-1000-files-{name.split('-')[0]}"
    benchmark.pedantic(run, setup=lambda: _fresh(target_fs, state), rounds=ROUNDS, warmup_rounds=1)
    return state["dir"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bench_apply_layer(benchmark, layer_tars, target_fs: str, flavour: str) -> None:
    path, entries = layer_tars[flavour]

    def run(target: str) -> int:
        with open(path, "rb") as f:
            return apply_layer(target, f)

    assert _count(_bench(benchmark, target_fs, f"{flavour}-apply", run)) == entries


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bench_gnu_tar_extract(benchmark, layer_tars, target_fs: str, flavour: str) -> None:
    path, entries = layer_tars[flavour]

    def run(target: str) -> None:
        subprocess.run(["tar", "-x", "--numeric-owner", "-p", "-f", path, "-C", target], check=True)

    assert _count(_bench(benchmark, target_fs, f"{flavour}-tar", run)) == entries

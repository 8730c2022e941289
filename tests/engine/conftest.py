"""Engine fixtures: test images (built once per session, offline) and engines per driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import engine as engine_pkg
import graphdrivers
from engine.engine import Engine
from engine.images import testimages
from engine.images.graph import chain_id
from engine.images.testimages import BuiltImage

SMALL_BIG_FILE = 1 << 20  # the "big" layer of the quick multi-layer image


@dataclass
class Images:
    busybox: BuiltImage
    multi: BuiltImage
    dir: str

    def archive(self, name: str, images: list[BuiltImage], layout: str = "docker", compression: str = "gzip") -> str:
        path = os.path.join(self.dir, "archive-" + name)
        if not os.path.exists(path):
            testimages.write(path, images, layout, compression)
        return path

    @property
    def chain(self) -> list[BuiltImage]:
        """Every image the multi archive holds: busybox, the untagged steps, strata/multi."""
        return [self.busybox, *self.multi.intermediates, self.multi]

    @property
    def busybox_tar(self) -> str:
        return self.archive("busybox.tar", [self.busybox])

    @property
    def multi_tar(self) -> str:
        return self.archive("multi.tar", [self.busybox, self.multi])


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """busybox:latest and a quick strata/multi (200 small files, a 1 MiB file, deletions)."""
    work = str(tmp_path_factory.mktemp("testimages"))
    base, multi = testimages.multilayer(work, small_files=200, big_size=SMALL_BIG_FILE)
    return Images(base, multi, work)


@pytest.fixture(scope="session")
def big_images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The full multi-layer image of the issue: 1,000 small files and a 100 MB file."""
    work = str(tmp_path_factory.mktemp("bigimages"))
    base, multi = testimages.multilayer(work)
    return Images(base, multi, work)


def heavy_drivers() -> list[str]:
    """vfs and one copy-on-write driver: the ones the 100 MB and fault tests run on."""
    names = graphdrivers.registered()
    cow = [n for n in ("overlay2", "btrfs", "devmapper", "aufs") if n in names][:1]
    return [n for n in ("vfs", *cow) if n in names]


@pytest.fixture
def engine(driver_name: str, driver_root: str) -> Iterator[Engine]:
    e = Engine(driver_root, driver_name)
    yield e
    e.close()


@pytest.fixture
def make_engine(driver_name: str, make_backing) -> Iterator:
    """Factory of more engines on fresh roots of the same driver (round trips)."""
    made: list[Engine] = []

    def make() -> Engine:
        fs = make_backing(graphdrivers.registration(driver_name).backing_fs)
        root = os.path.join(fs.mountpoint, "root")
        os.makedirs(root, exist_ok=True)
        made.append(Engine(root, driver_name))
        return made[-1]

    yield make
    for e in made:
        e.close()


@pytest.fixture
def vfs_engine(tmp_path) -> Iterator[Engine]:
    """An engine on vfs in a plain temp dir: for tests of engine logic, not of drivers."""
    e = Engine(str(tmp_path / "root"), "vfs")
    yield e
    e.close()


def run(engine: Engine, name: str, *args: str, **env: str) -> tuple[int, str, str]:
    job = engine.job(name, *args, env=env)
    status = job.run()
    return status, job.output().decode(), job.stderr.getvalue().decode()


def chains(*built: BuiltImage) -> set[str]:
    """Every driver layer id (chain id) the given test images consist of."""
    found = set()
    for image in built:
        parent = None
        for diff_id in image.diff_ids:
            parent = chain_id(parent, diff_id)
            found.add(parent)
    return found


def assert_clean(engine: Engine, *built: BuiltImage) -> None:
    """No image, no layer row, no tar-split, no driver layer: nothing a failed load left."""
    assert engine.graph.images() == []
    assert engine.db.query("SELECT chain_id, state FROM layers") == []
    assert os.listdir(engine.graph.layerdata) == []
    assert [c for c in chains(*built) if engine.driver.exists(c)] == []


def kill_9_when_ready(script: str, *args: str) -> subprocess.Popen:
    """Run `python -c script ARGS...`, wait for its "READY" line (the point it stops at), and
    kill -9 it there; returns the dead child."""
    repo = os.path.dirname(os.path.dirname(engine_pkg.__file__))
    child = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": repo})
    try:
        line = child.stdout.readline()
        assert line == "READY\n", line + child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return child

"""Container fixtures: the busybox test image, engines per (graphdriver, execdriver), the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import graphdrivers
from engine.engine import Engine
from engine.images import testimages

# The execdrivers every key flow runs on; crun is covered by its own test (same code path).
EXECS = {"native": {"exec.driver": "native"}, "oci": {"exec.driver": "oci", "exec.runtime": "runc"}}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("containers-images")
    image = testimages.busybox(str(work / "build"))
    return testimages.write(str(work / "busybox-image.tar"), [image])


@pytest.fixture(params=sorted(EXECS))
def exec_name(request: pytest.FixtureRequest) -> str:
    return request.param


def make_engine(root: str, driver: str, exec_name: str, busybox_tar: str | None = None, **extra: str) -> Engine:
    engine = Engine(root, driver, {**EXECS[exec_name], **extra})
    if busybox_tar is not None and not engine.graph.images():
        job = engine.job("load", busybox_tar)
        assert job.run() == 0, job.stderr.getvalue()
    return engine


@pytest.fixture
def engine(driver_name: str, driver_root: str, exec_name: str, busybox_tar: str) -> Iterator[Engine]:
    """An engine with busybox loaded, on every registered graphdriver x both execdrivers."""
    e = make_engine(driver_root, driver_name, exec_name, busybox_tar)
    yield e
    e.close()


@pytest.fixture
def vfs_engine(tmp_path, exec_name: str, busybox_tar: str) -> Iterator[Engine]:
    """vfs in a plain temp dir: for container logic that does not depend on the driver."""
    e = make_engine(str(tmp_path / "root"), "vfs", exec_name, busybox_tar)
    yield e
    e.close()


def heavy_drivers() -> list[str]:
    """vfs and one copy-on-write driver: the ones the fault tests run on."""
    names = graphdrivers.registered()
    cow = [n for n in ("overlay2", "btrfs", "devmapper", "aufs") if n in names][:1]
    return [n for n in ("vfs", *cow) if n in names]


def job(engine: Engine, name: str, /, *args: str, **env: str) -> tuple[int, bytes, bytes]:
    j = engine.job(name, *args, env=env)
    status = j.run()
    return status, j.stdout.getvalue(), j.stderr.getvalue()


def strata(root: str, driver: str, exec_name: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """The `strata` command line, as a user runs it."""
    opts = [x for k, v in EXECS[exec_name].items() for x in ("-o", f"{k}={v}")]
    cmd = [sys.executable, "-m", "engine.cli", "--root", root, "-s", driver, *opts, *args]
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run(cmd, capture_output=True, env=env, timeout=120, **kw)


def strata_popen(root: str, driver: str, exec_name: str, *args: str) -> subprocess.Popen:
    opts = [x for k, v in EXECS[exec_name].items() for x in ("-o", f"{k}={v}")]
    cmd = [sys.executable, "-m", "engine.cli", "--root", root, "-s", driver, *opts, *args]
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

"""Fixtures every test shares: loop-mounted backing filesystems, a driver per registered
name on the filesystem it asks for, and a session-wide check that nothing leaked."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

import graphdrivers
from graphdrivers import loopdev, mountutil
from graphdrivers.backing import LoopFilesystem

BACKING_SIZE = 8 << 30  # sparse: costs only what is written


def _our_mounts() -> set[str]:
    tmp = os.path.realpath(tempfile.gettempdir())
    return {p for p, _, _ in mountutil.mount_table() if p.startswith(tmp + "/") or p.startswith("/run/strata")}


def _loop_devices() -> set[str]:
    return {f"/dev/{n}" for n in os.listdir("/sys/block") if n.startswith("loop") and loopdev.backing_file(n)}


def _our_processes() -> set[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    keys = ("graphdrivers", "pyfuse3", "strata daemon", "docker-registry")
    return {line.strip() for line in out.splitlines()[1:] if any(k in line for k in keys) and "pytest" not in line}


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the run if a test left a mount, a loop device or a helper process behind."""
    before = (_our_mounts(), _loop_devices(), _our_processes())
    yield
    after = (_our_mounts(), _loop_devices(), _our_processes())
    kinds = ("mounts", "loop devices", "processes")
    leaked = [f"{kind}: {sorted(a - b)}" for kind, b, a in zip(kinds, before, after, strict=True) if a - b]
    if leaked:
        pytest.fail("tests leaked " + "; ".join(leaked), pytrace=False)


@pytest.fixture
def make_backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory: `make_backing("xfs")` -> a mounted LoopFilesystem, destroyed after the test."""
    made: list[LoopFilesystem] = []

    def make(fstype: str, size: int = BACKING_SIZE) -> LoopFilesystem:
        fs = LoopFilesystem(str(tmp_path_factory.mktemp(f"backing-{fstype}")), fstype, size).create()
        made.append(fs)
        return fs

    yield make
    for fs in reversed(made):
        fs.destroy()


@pytest.fixture(params=graphdrivers.registered())
def driver_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def driver_root(driver_name: str, make_backing) -> str:
    """An engine root on the backing filesystem the driver registered for."""
    fs = make_backing(graphdrivers.registration(driver_name).backing_fs)
    root = os.path.join(fs.mountpoint, "root")
    os.mkdir(root)
    return root


@pytest.fixture
def driver(driver_name: str, driver_root: str) -> Iterator[graphdrivers.Driver]:
    """A fresh driver of every registered kind, on the backing filesystem it registered for.

    Every registered driver must run on the project's machines (aufs and devmapper fall
    back to their FUSE and reflink backends), so a DriverNotSupported here is a failure.
    """
    d = graphdrivers.get_driver(driver_name, root=driver_root)
    yield d
    d.cleanup()

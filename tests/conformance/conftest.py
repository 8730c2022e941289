"""Fixtures of the driver conformance suite (the `driver` fixture itself is in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

import graphdrivers
from graphdrivers import Driver

from ..conftest import DRIVER_VARIANTS
from .treeutil import mounted, umask

# The base layer every "written through a read-write mount" case starts from: a directory
# with the sticky bit owned by another user and group, and a setuid file no one can read.
BASE_DIR_MODE = 0o1705
BASE_DIR_OWNER = (1, 2)
BASE_FILE_MODE = 0o4222
BASE_BYTES = bytes(range(256)) * 16 + b"strata conformance base layer\n"


def write_base(path: str) -> None:
    with umask(0):
        os.mkdir(os.path.join(path, "dir"), BASE_DIR_MODE)
        os.chown(os.path.join(path, "dir"), *BASE_DIR_OWNER)
        os.chmod(os.path.join(path, "dir"), BASE_DIR_MODE)  # chown may clear mode bits
        fd = os.open(os.path.join(path, "file"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, BASE_FILE_MODE)
        try:
            os.write(fd, BASE_BYTES)
            os.fchmod(fd, BASE_FILE_MODE)  # writing clears setuid on some filesystems
        finally:
            os.close(fd)


@pytest.fixture(params=[*graphdrivers.registered(), *DRIVER_VARIANTS])
def driver_name(request: pytest.FixtureRequest) -> str:
    """Every registered driver and every variant (e.g. aufs served by pyfuse3) runs every case."""
    return request.param


@pytest.fixture
def base(driver: Driver) -> str:
    """A read-write layer "base" holding /dir (01705, 1:2) and /file (04222, BASE_BYTES)."""
    driver.create_read_write("base")
    with mounted(driver, "base") as path:
        write_base(path)
    return "base"

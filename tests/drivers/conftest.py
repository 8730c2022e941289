"""Fixtures for the devmapper tests: a driver root on a loop-mounted backing filesystem
and a factory of drivers that are all cleaned up after the test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

import graphdrivers
from graphdrivers.devmapper.driver import DevmapperDriver

MakeDriver = Callable[..., DevmapperDriver]


@pytest.fixture
def xfs_root(make_backing) -> str:
    """A driver root on an xfs (reflink=1) backing: the pool is the root's own filesystem."""
    fs = make_backing("xfs")
    root = os.path.join(fs.mountpoint, "root")
    os.mkdir(root)
    return root


@pytest.fixture
def make_driver(xfs_root: str) -> Iterator[MakeDriver]:
    """`make_driver(**options)` -> a devmapper driver on `xfs_root` (or `root=`)."""
    made: list[DevmapperDriver] = []

    def make(root: str = xfs_root, **options: str) -> DevmapperDriver:
        d = graphdrivers.get_driver("devmapper", root=root, options=options)
        assert isinstance(d, DevmapperDriver)
        made.append(d)
        return d

    yield make
    for d in reversed(made):
        d.cleanup()

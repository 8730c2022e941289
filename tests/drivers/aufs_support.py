"""Shared pieces of the aufs tests: a FUSE-backed driver on its own ext4 (the backend
that runs on every kernel) and branch-level helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import graphdrivers
from graphdrivers.aufs.driver import AufsDriver


def make_root(make_backing, size: int = 1 << 30) -> str:
    root = os.path.join(make_backing("ext4", size).mountpoint, "root")
    os.mkdir(root)
    return root


# FUSE server and data path of each `aufs` fixture parameter
AUFS_VARIANTS = {
    "passthrough": {"aufs.fuse_passthrough": "true"},
    "served": {"aufs.fuse_passthrough": "false"},
    "pyfuse3": {"aufs.fuse_server": "pyfuse3"},
}


@pytest.fixture(params=list(AUFS_VARIANTS))
def aufs(make_backing, request: pytest.FixtureRequest) -> Iterator[AufsDriver]:
    """The FUSE driver every way it can run: the direct server with file data passed
    through to the branch files by the kernel or served by the FUSE process itself, and
    the pyfuse3 server (always served)."""
    options = {"aufs.backend": "fuse", **AUFS_VARIANTS[request.param]}
    d = graphdrivers.get_driver("aufs", root=make_root(make_backing), options=options)
    assert isinstance(d, AufsDriver)
    yield d
    d.cleanup()


def branch(driver: AufsDriver, layer: str, *parts: str) -> str:
    """A path inside a layer's own branch (diff/<id>), written directly in some tests."""
    return os.path.join(driver.metadata(layer)["DiffDir"], *parts)


def put_file(path: str, data: bytes = b"", mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)

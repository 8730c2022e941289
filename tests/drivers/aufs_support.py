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


@pytest.fixture(params=["passthrough", "served"])
def aufs(make_backing, request: pytest.FixtureRequest) -> Iterator[AufsDriver]:
    """The FUSE driver both ways file data can move: passed through to the branch files
    by the kernel, or served by the FUSE process itself."""
    options = {"aufs.backend": "fuse", "aufs.fuse_passthrough": str(request.param == "passthrough").lower()}
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

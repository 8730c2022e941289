"""btrfs driver specifics: selection by backing filesystem, subvolumes and snapshots,
nested subvolume removal, qgroup limits, and recovery from an interrupted create."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import btrfsutil
import pytest

import graphdrivers
from graphdrivers.btrfs.driver import BtrfsDriver
from graphdrivers.errors import DriverNotSupported, InvalidOption

from ..conformance.treeutil import listing, mounted, read, write

SIZE = 1 << 30


@pytest.fixture
def btrfs_root(make_backing) -> str:
    root = os.path.join(make_backing("btrfs", SIZE).mountpoint, "root")
    os.mkdir(root)
    return root


@pytest.fixture
def driver(btrfs_root: str) -> Iterator[BtrfsDriver]:
    d = graphdrivers.get_driver("btrfs", root=btrfs_root)
    yield d
    d.cleanup()


def test_docker_driver_selects_btrfs_on_btrfs(btrfs_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_DRIVER", "btrfs")
    d = graphdrivers.get_driver(root=btrfs_root)
    try:
        assert isinstance(d, BtrfsDriver)
        assert ("Backing Filesystem", "btrfs") in d.status()
    finally:
        d.cleanup()


def test_docker_driver_btrfs_on_ext4_says_what_is_missing(make_backing, monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.path.join(make_backing("ext4", 64 << 20).mountpoint, "root")
    os.mkdir(root)
    monkeypatch.setenv("DOCKER_DRIVER", "btrfs")
    with pytest.raises(DriverNotSupported) as info:
        graphdrivers.get_driver(root=root)
    assert info.value.driver == "btrfs"
    assert "must be on a btrfs filesystem" in str(info.value) and "ext4" in str(info.value)
    assert os.listdir(root) == [], "a refused driver created files"


def test_layers_are_subvolumes_and_children_snapshots(driver: BtrfsDriver) -> None:
    driver.create("base")
    with mounted(driver, "base") as path:
        assert path == os.path.join(driver.home, "subvolumes", "base")
        write(os.path.join(path, "f"), b"base")
    driver.create_read_write("child", "base")
    with mounted(driver, "child") as path, mounted(driver, "base") as base_path:
        assert btrfsutil.is_subvolume(path)
        assert btrfsutil.subvolume_info(path).parent_uuid == btrfsutil.subvolume_info(base_path).uuid
        assert read(os.path.join(path, "f")) == b"base"
    meta = driver.metadata("child")
    assert meta["Path"] == os.path.join(driver.home, "subvolumes", "child") and int(meta["SubvolumeID"]) > 5


def test_remove_deletes_nested_subvolumes(driver: BtrfsDriver, btrfs_root: str) -> None:
    driver.create_read_write("container")
    with mounted(driver, "container") as path:
        btrfsutil.create_subvolume(os.path.join(path, "nested"))
        btrfsutil.create_subvolume(os.path.join(path, "nested", "deeper"))
        write(os.path.join(path, "nested", "deeper", "f"), b"x")
        btrfsutil.create_snapshot(os.path.join(path, "nested"), os.path.join(path, "frozen"), read_only=True)
        btrfsutil.set_subvolume_read_only(os.path.join(path, "nested"), True)  # deeper can't be unlinked now
    driver.remove("container")
    assert not driver.exists("container")
    mountpoint = os.path.dirname(btrfs_root)
    assert [p for p, _ in btrfsutil.SubvolumeIterator(mountpoint)] == []


def test_size_limit_is_enforced_on_a_snapshot(driver: BtrfsDriver) -> None:
    assert ("Quota", "disabled") in driver.status()
    driver.create("base")
    driver.create_read_write("limited", "base", storage_opt={"size": "16M"})
    assert ("Quota", "enabled") in driver.status()
    assert driver.metadata("limited")["Size"] == str(16 << 20)
    with mounted(driver, "limited") as path:
        with pytest.raises(OSError) as info, open(os.path.join(path, "big"), "wb") as f:
            for _ in range(64):
                f.write(b"q" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
        assert info.value.errno == errno.EDQUOT
    with mounted(driver, "base") as path:  # the parent has no limit
        write(os.path.join(path, "big"), b"b" * (24 << 20))
    driver.create("grandchild", "limited")  # nor has a child: the kernel's copied limit is dropped
    assert "Size" not in driver.metadata("grandchild")
    with mounted(driver, "grandchild") as path:
        write(os.path.join(path, "big"), b"g" * (24 << 20))


def test_size_below_min_space_is_refused_and_leaves_nothing(btrfs_root: str) -> None:
    d = graphdrivers.get_driver("btrfs", root=btrfs_root, options={"btrfs.min_space": "32M"})
    try:
        before = listing(btrfs_root)
        with pytest.raises(InvalidOption, match=r"less than btrfs\.min_space"):
            d.create("small", storage_opt={"size": "16M"})
        with pytest.raises(InvalidOption, match="more than 0"):
            d.create("zero", storage_opt={"size": "0"})
        assert listing(btrfs_root) == before
        assert ("Quota", "disabled") in d.status()
        d.create("fine", storage_opt={"size": "32M"})
        assert d.metadata("fine")["Size"] == str(32 << 20)
    finally:
        d.cleanup()
    with pytest.raises(InvalidOption, match=r"btrfs\.min_space"):
        graphdrivers.get_driver("btrfs", root=btrfs_root, options={"btrfs.min_space": "lots"})


def test_interrupted_create_is_removed_on_start(driver: BtrfsDriver, btrfs_root: str) -> None:
    """A crash between snapshot and rename leaves `.tmp-<id>`; the next start deletes it."""
    driver.create("base")
    with mounted(driver, "base") as path:
        btrfsutil.create_snapshot(path, os.path.join(driver.home, "subvolumes", ".tmp-half"))
    write(os.path.join(driver.home, "quotas", "half"), b"1048576")
    again = graphdrivers.get_driver("btrfs", root=btrfs_root)
    try:
        assert sorted(os.listdir(os.path.join(driver.home, "subvolumes"))) == ["base"]
        assert os.listdir(os.path.join(driver.home, "quotas")) == []
        assert not again.exists("half") and again.exists("base")
        again.create("half", "base")  # the id is usable again
        assert "Size" not in again.metadata("half")
    finally:
        again.cleanup()


def test_status_names_the_library(driver: BtrfsDriver) -> None:
    rows = dict(driver.status())
    assert rows["Build Version"].startswith("btrfsutil 6.")
    assert rows["Library Version"].startswith("libbtrfsutil 1.")

"""Conformance: every misuse of the contract is a typed error and changes nothing."""

from __future__ import annotations

import errno
import os

import pytest

import graphdrivers
from graphdrivers import Driver
from graphdrivers.errors import (
    DriverError,
    InvalidLayerId,
    InvalidOption,
    LayerExists,
    LayerNotFound,
    ParentNotFound,
    QuotaNotSupported,
)

from ..conftest import resolve_driver
from .conftest import BASE_BYTES
from .treeutil import listing, mounted, read, write

BAD_IDS = ["", "../x", "a/b", "x" * 129, ".hidden", "-dash", "/abs", "a b", "é", "a\x00b"]


def test_unknown_id(driver: Driver) -> None:
    assert not driver.exists("nope")
    for call in (driver.get, driver.remove, driver.metadata):
        with pytest.raises(LayerNotFound) as info:
            call("nope")
        assert info.value.layer_id == "nope"
    with pytest.raises(graphdrivers.errors.LayerNotMounted):
        driver.put("nope")


def test_existing_id(driver: Driver, base: str) -> None:
    for create in (driver.create, driver.create_read_write):
        with pytest.raises(LayerExists):
            create(base)
        with pytest.raises(LayerExists):
            create(base, base)
    with mounted(driver, base) as path:
        assert read(os.path.join(path, "file")) == BASE_BYTES


def test_missing_parent(driver: Driver, driver_root: str) -> None:
    before = listing(driver_root)
    for create in (driver.create, driver.create_read_write):
        with pytest.raises(ParentNotFound) as info:
            create("orphan", "no-such-parent")
        assert info.value.parent == "no-such-parent"
    assert not driver.exists("orphan")
    assert listing(driver_root) == before


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_ids(driver: Driver, driver_root: str, bad: str) -> None:
    driver.create("good")
    before = listing(driver_root)
    calls = [
        lambda: driver.create(bad),
        lambda: driver.create_read_write(bad),
        lambda: driver.create("fine", bad),
        lambda: driver.exists(bad),
        lambda: driver.get(bad),
        lambda: driver.put(bad),
        lambda: driver.remove(bad),
        lambda: driver.metadata(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidLayerId):
            call()
    assert listing(driver_root) == before
    assert not driver.exists("fine")


def test_longest_valid_id(driver: Driver) -> None:
    longest = "a" + "B9_.-" * 25 + "zz"
    assert len(longest) == 128
    driver.create(longest)
    with mounted(driver, longest) as path:
        assert os.listdir(path) == []
    driver.remove(longest)


def test_unknown_driver_option(driver_name: str, driver_root: str) -> None:
    with pytest.raises(InvalidOption):
        name, options = resolve_driver(driver_name)
        graphdrivers.get_driver(name, root=driver_root, options={**options, "no.such.option": "1"})


def test_unknown_storage_option(driver: Driver, driver_root: str) -> None:
    before = listing(driver_root)
    with pytest.raises(InvalidOption):
        driver.create("x", storage_opt={"no.such.option": "1"})
    with pytest.raises(InvalidOption):
        driver.create("x", storage_opt={"size": "ten gigs"})
    assert not driver.exists("x")
    assert listing(driver_root) == before


def test_quota(driver: Driver, driver_root: str) -> None:
    """A `size` limit is enforced (EDQUOT or ENOSPC past it), or refused with the reason."""
    before = listing(driver_root)
    try:
        driver.create_read_write("limited", storage_opt={"size": "64M"})
    except QuotaNotSupported as exc:
        assert exc.reason and exc.driver == driver.name
        assert not driver.exists("limited")
        assert listing(driver_root) == before
        return
    with mounted(driver, "limited") as path:
        write(os.path.join(path, "small"), b"s" * (8 << 20))  # well under the limit
        chunk = b"q" * (1 << 20)
        with pytest.raises(OSError) as info:  # the failing write is somewhere in the loop
            with open(os.path.join(path, "big"), "wb") as f:
                for _ in range(256):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        assert info.value.errno in (errno.EDQUOT, errno.ENOSPC)


def test_cleaned_up_driver_refuses_work(driver: Driver) -> None:
    driver.create("a")
    driver.cleanup()
    with pytest.raises(DriverError):
        driver.create("b")

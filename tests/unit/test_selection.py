"""get_driver's selection rules: explicit name, $DOCKER_DRIVER, prior storage, priority.

The registry is replaced for each test by vfs plus two small stand-in drivers ("fast",
which always works, and "picky", whose prerequisites never hold), so the rules are
tested on their own, whatever drivers the project registers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

import graphdrivers
from graphdrivers import registry
from graphdrivers.errors import DriverNotSupported, InvalidOption
from graphdrivers.vfs import VfsDriver


class DirDriver(VfsDriver):
    """vfs under another name: a driver whose prerequisites always hold."""

    name = "fast"


def _fast(home: str, options: Mapping[str, str]) -> DirDriver:
    return DirDriver(home, options)


def _picky(home: str, options: Mapping[str, str]) -> DirDriver:
    raise DriverNotSupported("picky", "the kernel lacks the picky filesystem")


@pytest.fixture(autouse=True)
def registry_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        "vfs": registry.registration("vfs"),
        "fast": registry.Registration("fast", _fast, 20, "ext4"),
        "picky": registry.Registration("picky", _picky, 10, "ext4"),
    }
    monkeypatch.setattr(registry, "_registry", table)
    monkeypatch.delenv("DOCKER_DRIVER", raising=False)


def _store(root: str, name: str) -> None:
    """Leave a layer of `name` under root, as an earlier run would have."""
    d = graphdrivers.get_driver(name, root=root)
    d.create("left-behind")
    d.cleanup()


def test_registered_in_priority_order() -> None:
    assert graphdrivers.registered() == ["picky", "fast", "vfs"]


def test_explicit_name(tmp_path) -> None:
    d = graphdrivers.get_driver("vfs", root=str(tmp_path))
    assert d.name == "vfs" and d.home == str(tmp_path / "vfs")


def test_docker_driver_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_DRIVER", "vfs")
    assert graphdrivers.get_driver(root=str(tmp_path)).name == "vfs"
    assert graphdrivers.get_driver("fast", root=str(tmp_path)).name == "fast"  # explicit wins


def test_first_supported_by_priority(tmp_path) -> None:
    assert graphdrivers.get_driver(root=str(tmp_path)).name == "fast"  # picky is refused


def test_prior_storage_wins_over_priority(tmp_path) -> None:
    _store(str(tmp_path), "vfs")
    d = graphdrivers.get_driver(root=str(tmp_path))
    assert d.name == "vfs" and d.exists("left-behind")


def test_empty_prior_directory_is_not_storage(tmp_path) -> None:
    os.mkdir(tmp_path / "vfs")
    assert graphdrivers.get_driver(root=str(tmp_path)).name == "fast"


def test_two_prior_storages_are_ambiguous(tmp_path) -> None:
    _store(str(tmp_path), "vfs")
    _store(str(tmp_path), "fast")
    with pytest.raises(graphdrivers.errors.AmbiguousPriorStorage) as info:
        graphdrivers.get_driver(root=str(tmp_path))
    assert "vfs" in str(info.value) and "fast" in str(info.value)
    assert graphdrivers.get_driver("vfs", root=str(tmp_path)).name == "vfs"  # the user chose


def test_unknown_name(tmp_path) -> None:
    with pytest.raises(DriverNotSupported) as info:
        graphdrivers.get_driver("zfs", root=str(tmp_path))
    assert "no such driver" in info.value.reason and "vfs" in info.value.reason
    assert not os.path.exists(tmp_path / "zfs")


def test_unsupported_driver_says_why(tmp_path) -> None:
    with pytest.raises(DriverNotSupported) as info:
        graphdrivers.get_driver("picky", root=str(tmp_path))
    assert "picky filesystem" in info.value.reason


def test_nothing_supported_lists_every_reason(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registry", {"picky": registry.Registration("picky", _picky, 10, "ext4")})
    with pytest.raises(DriverNotSupported) as info:
        graphdrivers.get_driver(root=str(tmp_path))
    assert "picky: the kernel lacks the picky filesystem" in info.value.reason


def test_unknown_option(tmp_path) -> None:
    with pytest.raises(InvalidOption) as info:
        graphdrivers.get_driver("vfs", root=str(tmp_path), options={"vfs.cpoy": "full"})
    assert "vfs.cpoy" in str(info.value) and "vfs.copy" in str(info.value)


def test_bad_option_value(tmp_path) -> None:
    with pytest.raises(InvalidOption):
        graphdrivers.get_driver("vfs", root=str(tmp_path), options={"vfs.copy": "telepathy"})


def _fallback_only(home: str, options: Mapping[str, str]) -> DirDriver:
    """A driver with a kernel backend this host lacks and a userspace stand-in (like aufs's FUSE union)."""
    if options.get("stand.backend", "userspace") == "kernel":
        raise DriverNotSupported("stand", "the kernel lacks it")
    return DirDriver(home, {})


def test_stand_ins_are_used_when_named_or_prior_never_by_default(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"vfs": registry.registration("vfs"),
             "stand": registry.Registration("stand", _fallback_only, 10, "ext4", {"stand.backend": "kernel"})}
    monkeypatch.setattr(registry, "_registry", table)
    assert graphdrivers.get_driver(root=str(tmp_path / "a")).name == "vfs"  # its kernel backend is missing
    assert graphdrivers.get_driver("stand", root=str(tmp_path / "b")).name == "fast"  # named: the stand-in
    _store(str(tmp_path / "c"), "stand")
    assert graphdrivers.get_driver(root=str(tmp_path / "c")).name == "fast"  # prior storage


def test_the_real_priority_is_moby_20_10s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the project's own registry
    assert graphdrivers.registered() == ["btrfs", "overlay2", "aufs", "devmapper", "vfs"]
    assert registry.registration("aufs").auto_options == {"aufs.backend": "kernel"}
    assert registry.registration("devmapper").auto_options == {"dm.backend": "dmthin"}

"""overlay2 driver specifics: prerequisites, Docker's on-disk layout, deep chains past the
one-page mount-option limit, read-only committed layers, native changes, and recovery
from a crashed run (stale mounts, half-created layers)."""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from collections.abc import Iterator

import pytest

import graphdrivers
from graphdrivers import mountutil, naivediff
from graphdrivers.changes import Change
from graphdrivers.errors import (
    DriverError,
    DriverNotSupported,
    InvalidLayerId,
    QuotaNotSupported,
    UnsafeArchive,
)
from graphdrivers.overlay2 import driver as overlay2
from graphdrivers.overlay2.driver import Overlay2Driver

from ..conformance.treeutil import mounted, read, tree, write


@pytest.fixture
def root(make_backing) -> str:
    path = os.path.join(make_backing("ext4", 256 << 20).mountpoint, "root")
    os.mkdir(path)
    return path


@pytest.fixture
def driver(root: str) -> Iterator[Overlay2Driver]:
    d = graphdrivers.get_driver("overlay2", root=root)
    yield d
    d.cleanup()


def chain(driver: Overlay2Driver, depth: int, prefix: str = "c") -> list[str]:
    """`depth` layers, each adding files/<i>; returns their ids, bottom first."""
    ids, parent = [], None
    for i in range(depth):
        layer = f"{prefix}{i}"
        driver.create(layer, parent)
        write(os.path.join(driver.home, layer, "diff", "files", str(i)), str(i).encode())
        ids.append(layer)
        parent = layer
    return ids


def test_startup_removes_d_type_probes_of_dead_processes(root: str) -> None:
    """A kill while overlay2 starts leaves its d_type probe; the next start removes it."""
    home = os.path.join(root, "overlay2")
    dead = os.path.join(home, ".d_type-probe-99999999-1")  # above any pid_max: no such process
    alive = os.path.join(home, f".d_type-probe-{os.getppid()}-1")  # a running prober's: left alone
    for probe in (dead, alive):
        write(os.path.join(probe, "file"), b"")
    graphdrivers.get_driver("overlay2", root=root).cleanup()
    assert not os.path.exists(dead) and os.path.exists(os.path.join(alive, "file"))


def test_runs_on_btrfs_too(make_backing) -> None:
    root = os.path.join(make_backing("btrfs", 256 << 20).mountpoint, "root")
    d = graphdrivers.get_driver("overlay2", root=root)
    try:
        assert ("Backing Filesystem", "btrfs") in d.status()
    finally:
        d.cleanup()


def test_unsupported_backing_filesystem_is_named(tmp_path) -> None:
    point = str(tmp_path / "tmpfs")
    os.mkdir(point)
    mountutil.mount("tmpfs", point, "tmpfs", 0, "size=16m")
    try:
        with pytest.raises(DriverNotSupported) as info:
            graphdrivers.get_driver("overlay2", root=point)
        assert "tmpfs" in info.value.reason and "ext4, xfs (ftype=1) or btrfs" in info.value.reason
        assert os.listdir(point) == []
    finally:
        mountutil.umount(point)


def test_layout_and_short_links(driver: Overlay2Driver) -> None:
    driver.create("base")
    driver.create_read_write("child", "base")
    home = driver.home
    assert sorted(os.listdir(os.path.join(home, "base"))) == ["committed", "diff", "link"]
    assert sorted(os.listdir(os.path.join(home, "child"))) == ["diff", "link", "lower", "merged", "work"]
    base_link, child_link = read(f"{home}/base/link").decode(), read(f"{home}/child/link").decode()
    assert len(base_link) == len(child_link) == 26 and base_link != child_link
    assert os.readlink(f"{home}/l/{child_link}") == "../child/diff"
    assert read(f"{home}/child/lower") == f"l/{base_link}".encode()
    driver.create("grandchild", "child")
    assert read(f"{home}/grandchild/lower") == f"l/{child_link}:l/{base_link}".encode()
    driver.remove("child")
    assert not os.path.lexists(f"{home}/l/{child_link}")
    assert sorted(os.listdir(home)) == ["base", "grandchild", "l"]


def test_the_links_dir_is_not_a_layer_id(driver: Overlay2Driver) -> None:
    driver.create("base")
    with pytest.raises(InvalidLayerId):
        driver.create("l", "base")
    assert not driver.exists("l")
    assert len(os.listdir(os.path.join(driver.home, "l"))) == 1


def test_failed_create_leaves_nothing(driver: Overlay2Driver) -> None:
    driver.create("base")
    os.unlink(os.path.join(driver.home, "base", "link"))  # a damaged parent
    before = sorted(os.listdir(driver.home)), sorted(os.listdir(os.path.join(driver.home, "l")))
    with pytest.raises(DriverError, match="has no link file"):
        driver.create("child", "base")
    assert not driver.exists("child")
    assert (sorted(os.listdir(driver.home)), sorted(os.listdir(os.path.join(driver.home, "l")))) == before


def test_layer_without_parent_is_its_diff_dir(driver: Overlay2Driver) -> None:
    driver.create_read_write("alone")
    with mounted(driver, "alone") as path:
        assert path == os.path.join(driver.home, "alone", "diff")
        assert mountutil.mounts_under(driver.home) == []


def test_layer_with_child_mounts_read_only(driver: Overlay2Driver) -> None:
    chain(driver, 3)
    with mounted(driver, "c1") as path:
        assert read(os.path.join(path, "files", "0")) == b"0"
        with pytest.raises(OSError) as info:
            write(os.path.join(path, "new"), b"x")
        assert info.value.errno == errno.EROFS
    with mounted(driver, "c2") as path:  # the top has no child: writable
        write(os.path.join(path, "new"), b"x")
    assert read(os.path.join(driver.home, "c2", "diff", "new")) == b"x"


def test_deep_chain_uses_relative_mount_options(driver: Overlay2Driver) -> None:
    ids = chain(driver, 130)
    lowers = [os.path.join(driver.home, e) for e in driver._lowers(ids[-1])]
    assert len(lowers) == 129
    assert not overlay2.mounting.fits(overlay2._options(lowers, "d", "w", False)), "absolute paths would fit"
    driver.create_read_write("top", ids[-1])
    with mounted(driver, "top") as path:
        assert mountutil.is_mountpoint(path)
        assert sorted(os.listdir(os.path.join(path, "files")), key=int) == [str(i) for i in range(130)]
        write(os.path.join(path, "files", "0"), b"changed")
    assert read(os.path.join(driver.home, "top", "diff", "files", "0")) == b"changed"
    assert os.getcwd() != driver.home, "the relative mount moved the process's cwd"


def test_chain_too_deep_for_one_page_is_a_clear_error(driver: Overlay2Driver) -> None:
    ids = chain(driver, 150)
    with pytest.raises(DriverError, match="149 lower layers"):
        driver.get(ids[-1])
    assert mountutil.mounts_under(driver.home) == []
    assert driver.refcount(ids[-1]) == 0


def test_native_changes(driver: Overlay2Driver) -> None:
    driver.create("base")
    base = os.path.join(driver.home, "base", "diff")
    write(os.path.join(base, "keep"), b"k")
    write(os.path.join(base, "gone"), b"g")
    write(os.path.join(base, "edit"), b"e")
    write(os.path.join(base, "dir", "old"), b"o")
    write(os.path.join(base, "quiet", "sub", "f"), b"f")
    driver.create_read_write("child", "base")
    with mounted(driver, "child") as path:
        os.unlink(os.path.join(path, "gone"))
        write(os.path.join(path, "edit"), b"edited")
        write(os.path.join(path, "added", "f"), b"a")
        for name in os.listdir(os.path.join(path, "dir")):
            os.unlink(os.path.join(path, "dir", name))
        os.rmdir(os.path.join(path, "dir"))
        write(os.path.join(path, "dir", "new"), b"n")  # dir is now opaque in the upper
        write(os.path.join(path, "quiet", "sub", "f"), b"F")  # copies up quiet/ and quiet/sub/
        os.chmod(os.path.join(path, "keep"), 0o644)  # copied up, but the same as below
    upper = os.path.join(driver.home, "child", "diff")
    assert stat.S_ISCHR(os.lstat(os.path.join(upper, "gone")).st_mode)
    assert os.getxattr(os.path.join(upper, "dir"), "trusted.overlay.opaque") == b"y"
    assert driver.changes("child", "base") == [
        Change("/added", "A"),
        Change("/added/f", "A"),
        Change("/dir", "C"),
        Change("/dir/new", "A"),
        Change("/dir/old", "D"),
        Change("/edit", "C"),
        Change("/gone", "D"),
        Change("/quiet", "C"),
        Change("/quiet/sub", "C"),
        Change("/quiet/sub/f", "C"),
    ]
    assert os.path.exists(os.path.join(upper, "keep"))
    with mounted(driver, "child") as child, mounted(driver, "base") as parent:
        assert naivediff.changes(child, parent) == driver.changes("child", "base")


def test_stale_mounts_and_half_created_layers_are_recovered(root: str) -> None:
    crashed = graphdrivers.get_driver("overlay2", root=root)
    chain(crashed, 2)
    crashed.create_read_write("container", "c1")
    merged = crashed.get("container")
    write(os.path.join(merged, "f"), b"survives")
    os.mkdir(os.path.join(crashed.home, ".tmp-half"))  # a create cut short
    os.symlink("../half/diff", os.path.join(crashed.home, "l", "HALFHALFHALFHALFHALFHALF22"))
    # the process "dies" here: no put, no cleanup
    again = graphdrivers.get_driver("overlay2", root=root)
    try:
        assert not mountutil.is_mountpoint(merged)
        assert sorted(e for e in os.listdir(again.home)) == ["c0", "c1", "container", "l"]
        assert len(os.listdir(os.path.join(again.home, "l"))) == 3
        with mounted(again, "container") as path:
            assert read(os.path.join(path, "f")) == b"survives"
            assert read(os.path.join(path, "files", "1")) == b"1"
        again.remove("container")
    finally:
        again.cleanup()


def _base_and_child(driver: Overlay2Driver) -> None:
    """base: /keep /gone /dir/old /etc/passwd; child (mounted writes): /gone deleted,
    /dir emptied and re-created (opaque), /new added."""
    driver.create("base")
    diff = os.path.join(driver.home, "base", "diff")
    for name in ("keep", "gone", "dir/old", "etc/passwd"):
        write(os.path.join(diff, name), name.encode())
    driver.create_read_write("child", "base")
    with mounted(driver, "child") as path:
        os.unlink(os.path.join(path, "gone"))
        os.unlink(os.path.join(path, "dir", "old"))
        os.rmdir(os.path.join(path, "dir"))
        write(os.path.join(path, "dir", "fresh"), b"fresh")
        write(os.path.join(path, "new"), b"new!")


def test_diff_turns_overlay_whiteouts_into_wh_entries(driver: Overlay2Driver) -> None:
    _base_and_child(driver)
    with driver.diff("child", "base") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        members = {m.name.rstrip("/"): m for m in tar}
    assert sorted(members) == [".wh.gone", "dir", "dir/.wh..wh..opq", "dir/fresh", "new"]
    assert all(not m.ischr() for m in members.values())
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in members.values() for k in m.pax_headers)
    assert driver.diff_size("child", "base") == len(b"fresh") + len(b"new!")


def test_apply_diff_turns_wh_entries_into_overlay_whiteouts(driver: Overlay2Driver) -> None:
    _base_and_child(driver)
    driver.create("applied", "base")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("etc/.wh.passwd", b""), ("dir/.wh..wh..opq", b""), ("dir/mine", b"mine"), ("x", b"xx")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    assert driver.apply_diff("applied", "base", buf) == 6
    upper = os.path.join(driver.home, "applied", "diff")
    whiteout = os.lstat(os.path.join(upper, "etc", "passwd"))
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert os.getxattr(os.path.join(upper, "dir"), "trusted.overlay.opaque") == b"y"
    with mounted(driver, "applied") as path:
        assert os.listdir(os.path.join(path, "etc")) == []
        assert os.listdir(os.path.join(path, "dir")) == ["mine"]
        assert read(os.path.join(path, "keep")) == b"keep"
    assert driver.changes("applied", "base") == [
        Change("/dir", "C"),
        Change("/dir/mine", "A"),
        Change("/dir/old", "D"),
        Change("/etc", "C"),
        Change("/etc/passwd", "D"),
        Change("/x", "A"),
    ]


def test_diff_round_trip_rebuilds_the_same_tree(driver: Overlay2Driver) -> None:
    _base_and_child(driver)
    driver.create("copy", "base")
    with driver.diff("child", "base") as stream:
        driver.apply_diff("copy", "base", stream)
    with mounted(driver, "child") as original, mounted(driver, "copy") as copy:
        assert tree(copy) == tree(original)


def test_not_the_real_parent_falls_back_to_the_naive_diff(driver: Overlay2Driver) -> None:
    _base_and_child(driver)
    driver.create("grandchild", "child")
    write(os.path.join(driver.home, "grandchild", "diff", "top"), b"top")
    assert driver.changes("grandchild", "base") == [
        Change("/dir", "C"),
        Change("/dir/fresh", "A"),
        Change("/dir/old", "D"),
        Change("/gone", "D"),
        Change("/new", "A"),
        Change("/top", "A"),
    ]
    with driver.diff("grandchild", None) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        names = sorted(m.name.rstrip("/") for m in tar)
    assert names == ["dir", "dir/fresh", "etc", "etc/passwd", "keep", "new", "top"]
    assert mountutil.mounts_under(driver.home) == []


def test_apply_diff_to_a_layer_without_parent_leaves_no_whiteout_devices(driver: Overlay2Driver) -> None:
    driver.create("bottom")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("a", ".wh.b", "d/.wh..wh..opq", "d/c"):
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    buf.seek(0)
    driver.apply_diff("bottom", None, buf)
    with mounted(driver, "bottom") as path:
        assert tree(path).keys() == {"/", "/a", "/d", "/d/c"}
        assert "trusted.overlay.opaque" not in os.listxattr(os.path.join(path, "d"))


class _Pipe:
    """A stream that can only be read forward, like a pull from a registry."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)

    def seekable(self) -> bool:
        return False


def _link_tar(target: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("deep/dir/link")
        info.type, info.linkname = tarfile.LNKTYPE, target
        tar.addfile(info)
    return buf.getvalue()


def test_hard_link_to_a_lower_layer_file_copies_it_up(driver: Overlay2Driver) -> None:
    driver.create("bottom")
    write(os.path.join(driver.home, "bottom", "diff", "deep", "dir", "kept"), b"kept", 0o640)
    os.chown(os.path.join(driver.home, "bottom", "diff", "deep", "dir", "kept"), 5, 6)
    driver.create("middle", "bottom")
    driver.create("top", "middle")
    assert driver.apply_diff("top", "middle", _Pipe(_link_tar("deep/dir/kept"))) == 0
    upper = os.path.join(driver.home, "top", "diff")
    copied = os.lstat(os.path.join(upper, "deep", "dir", "kept"))
    assert (stat.S_IMODE(copied.st_mode), copied.st_uid, copied.st_gid, copied.st_nlink) == (0o640, 5, 6, 2)
    with mounted(driver, "top") as path:
        link, kept = os.lstat(os.path.join(path, "deep/dir/link")), os.lstat(os.path.join(path, "deep/dir/kept"))
        assert link.st_ino == kept.st_ino and read(os.path.join(path, "deep/dir/link")) == b"kept"
    assert driver.changes("top", "middle") == [
        Change("/deep", "C"),
        Change("/deep/dir", "C"),
        Change("/deep/dir/link", "A"),
    ]


def test_unsafe_hard_link_is_still_refused_and_changes_nothing(driver: Overlay2Driver) -> None:
    driver.create("bottom")
    write(os.path.join(driver.home, "bottom", "diff", "deep", "dir", "kept"), b"kept")
    driver.create("top", "bottom")
    for target in ("../../etc/passwd", "deep/dir/missing"):
        with pytest.raises(UnsafeArchive):
            driver.apply_diff("top", "bottom", _Pipe(_link_tar(target)))
        assert os.listdir(os.path.join(driver.home, "top", "diff")) == []


def test_size_limit_with_xfs_project_quotas(xfs_prjquota: str) -> None:
    d = graphdrivers.get_driver("overlay2", root=xfs_prjquota)
    try:
        assert ("Size Limits", "project quotas") in d.status()
        d.create("base")
        write(os.path.join(d.home, "base", "diff", "f"), b"base")
        d.create_read_write("limited", "base", storage_opt={"size": "8M"})
        with mounted(d, "limited") as path:
            write(os.path.join(path, "small"), b"s" * (4 << 20))
            with pytest.raises(OSError) as info:
                write(os.path.join(path, "big"), b"b" * (16 << 20))
            assert info.value.errno == errno.EDQUOT
            assert read(os.path.join(path, "f")) == b"base"
        with mounted(d, "base") as path:  # no limit on the parent
            write(os.path.join(path, "big"), b"b" * (16 << 20))
    finally:
        d.cleanup()


def test_size_limit_on_ext4_without_prjquota_says_why(driver: Overlay2Driver, root: str) -> None:
    with pytest.raises(QuotaNotSupported, match="prjquota"):
        driver.create_read_write("limited", storage_opt={"size": "8M"})
    assert not driver.exists("limited")
    assert sorted(os.listdir(driver.home)) == ["l"]

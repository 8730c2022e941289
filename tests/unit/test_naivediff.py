"""naivediff: Docker's ChangesDirs semantics on real trees, sizes, and the diff/apply
round trip (apply(diff(upper, base)) over a copy of base equals upper exactly)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from graphdrivers import naivediff
from graphdrivers.changes import Change
from graphdrivers.driver import Driver
from tests.unit.archive_tools import snapshot, without_root_and_times_of

T = 1_600_000_000 * 10**9


def _write(path: str, data: bytes, mtime_ns: int | None = T) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def _copy(src: str, dst: str) -> None:
    subprocess.run(["cp", "-a", "--reflink=never", src, dst], check=True)


@pytest.fixture
def base(tmp_path) -> str:
    root = str(tmp_path / "base")
    _write(f"{root}/a/b/f1", b"one")
    _write(f"{root}/a/b/f2", b"two")
    _write(f"{root}/a/keep", b"keep")
    _write(f"{root}/c/x/y", b"y")
    _write(f"{root}/same", b"aaaa")
    _write(f"{root}/meta", b"m")
    _write(f"{root}/xa", b"x")
    _write(f"{root}/p/q/r/file", b"nested")
    os.makedirs(f"{root}/t/inner")
    _write(f"{root}/u", b"file that becomes a dir")
    os.symlink("t1", f"{root}/link")
    return root


def _kinds(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.path, c.kind) for c in changes]


def test_changes_exact_list(base: str, tmp_path) -> None:
    upper = str(tmp_path / "upper")
    _copy(base, upper)
    _write(f"{upper}/a/b/f1", b"ONE")  # same size, same mtime: only the content tells
    _write(f"{upper}/a/b/new", b"new")
    shutil.rmtree(f"{upper}/c")
    os.chmod(f"{upper}/meta", 0o600)
    os.unlink(f"{upper}/link")
    os.symlink("t2", f"{upper}/link")
    _write(f"{upper}/newdir/sub/file", b"f")
    os.setxattr(f"{upper}/xa", "user.x", b"1")
    os.utime(f"{upper}/p", ns=(1, 1))  # a directory's own mtime is not a change
    assert _kinds(naivediff.changes(upper, base)) == [
        ("/a", "C"), ("/a/b", "C"), ("/a/b/f1", "C"), ("/a/b/new", "A"), ("/c", "D"), ("/link", "C"),
        ("/meta", "C"), ("/newdir", "A"), ("/newdir/sub", "A"), ("/newdir/sub/file", "A"), ("/xa", "C"),
    ]


def test_unchanged_copy_has_no_changes(base: str, tmp_path) -> None:
    copy = str(tmp_path / "copy")
    _copy(base, copy)  # new inodes and ctimes: the content is compared and found equal
    assert naivediff.changes(copy, base) == []


def test_delete_then_recreate_nested_path(base: str, tmp_path) -> None:
    upper = str(tmp_path / "upper")
    _copy(base, upper)
    shutil.rmtree(f"{upper}/p/q")
    _write(f"{upper}/p/q/r/file", b"NESTED")
    assert _kinds(naivediff.changes(upper, base)) == [("/p", "C"), ("/p/q", "C"), ("/p/q/r", "C"),
                                                      ("/p/q/r/file", "C")]
    shutil.rmtree(f"{upper}/p/q")
    _write(f"{upper}/p/q/r/file", b"nested")  # identical again, with the same mtime
    assert naivediff.changes(upper, base) == []


def test_type_changes(base: str, tmp_path) -> None:
    upper = str(tmp_path / "upper")
    _copy(base, upper)
    shutil.rmtree(f"{upper}/t")
    _write(f"{upper}/t", b"now a file")
    os.unlink(f"{upper}/u")
    _write(f"{upper}/u/child", b"c")
    assert _kinds(naivediff.changes(upper, base)) == [("/t", "C"), ("/u", "C"), ("/u/child", "A")]


def test_mtime_only_change_and_no_parent(base: str, tmp_path) -> None:
    upper = str(tmp_path / "upper")
    _copy(base, upper)
    os.utime(f"{upper}/same", ns=(T + 123, T + 123))
    assert naivediff.changes(upper, base) == []  # Docker's rule: a side without nanoseconds (from a tar)
    os.utime(f"{upper}/same", ns=(T + 10**9, T + 10**9))
    assert _kinds(naivediff.changes(upper, base)) == [("/same", "C")]
    everything = naivediff.changes(base, None)
    assert {c.kind for c in everything} == {"A"}
    assert [c.path for c in everything] == sorted(c.path for c in everything)
    assert "/p/q/r/file" in [c.path for c in everything]


def test_changes_size_counts_hard_links_once(tmp_path) -> None:
    root = str(tmp_path)
    _write(f"{root}/f", b"x" * 100)
    os.link(f"{root}/f", f"{root}/g")
    os.symlink("f", f"{root}/s")
    os.mkdir(f"{root}/d")
    changes = [Change("/d", "A"), Change("/f", "A"), Change("/g", "A"), Change("/gone", "D"), Change("/s", "A")]
    assert naivediff.changes_size(root, changes) == 100


def test_diff_apply_round_trip(base: str, tmp_path) -> None:
    upper = str(tmp_path / "upper")
    _copy(base, upper)
    _write(f"{upper}/a/b/f1", b"ONE")
    shutil.rmtree(f"{upper}/c")
    shutil.rmtree(f"{upper}/p/q")
    _write(f"{upper}/p/q/r/other", b"o", mtime_ns=None)
    _write(f"{upper}/a/new", b"linked")
    os.link(f"{upper}/a/new", f"{upper}/a/new-link")
    os.chmod(f"{upper}/a", 0o1770)
    os.chown(f"{upper}/meta", 5, 6)
    shutil.rmtree(f"{upper}/t")
    os.symlink("/a/keep", f"{upper}/t")
    changes = naivediff.changes(upper, base)
    closed = []
    target = str(tmp_path / "target")
    _copy(base, target)
    stream = naivediff.export_stream(upper, changes, on_close=lambda: closed.append(1))
    try:
        applied = naivediff.apply(target, stream)
    finally:
        stream.close()
    assert closed == [1]
    assert applied == naivediff.changes_size(upper, changes)
    assert without_root_and_times_of(snapshot(target)) == without_root_and_times_of(snapshot(upper))
    assert naivediff.changes(target, upper) == []


class _DirDriver(Driver):
    """The smallest real driver: a layer is a full directory copy (like vfs)."""

    name = "dirs-for-naivediff-test"

    def status(self) -> list[tuple[str, str]]:
        return []

    def metadata(self, id: str) -> dict[str, str]:
        return {}

    def _exists(self, id: str) -> bool:
        return os.path.isdir(os.path.join(self.home, id))

    def _create(self, id: str, parent: str | None, *, size: int | None, read_write: bool) -> None:
        if parent is None:
            os.makedirs(os.path.join(self.home, id))
        else:
            _copy(os.path.join(self.home, parent), os.path.join(self.home, id))

    def _remove(self, id: str) -> None:
        shutil.rmtree(os.path.join(self.home, id))

    def _mount(self, id: str, mount_label: str) -> str:
        return os.path.join(self.home, id)

    def _unmount(self, id: str) -> None:
        pass


def test_driver_generic_diff_uses_naivediff(tmp_path) -> None:
    driver = _DirDriver(str(tmp_path))
    driver.create("base")
    base = driver.get("base")
    _write(f"{base}/etc/a", b"a")
    _write(f"{base}/etc/b", b"b")
    driver.put("base")
    driver.create("upper", "base")
    upper = driver.get("upper")
    os.unlink(f"{upper}/etc/a")
    _write(f"{upper}/etc/c", b"ccc")
    driver.put("upper")
    assert _kinds(driver.changes("upper", "base")) == [("/etc", "C"), ("/etc/a", "D"), ("/etc/c", "A")]
    assert driver.diff_size("upper", "base") == 3
    driver.create("copy", "base")
    with driver.diff("upper", "base") as stream:
        assert driver.refcount("upper") == 1  # held until the stream is closed
        assert driver.apply_diff("copy", "base", stream) == 3
    assert driver.refcount("upper") == driver.refcount("base") == 0
    assert driver.changes("copy", "upper") == []

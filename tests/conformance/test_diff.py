"""Conformance: changes, diff, diff_size and apply_diff between layers.

The expected `changes` lists follow the rules in model.py; apply_diff is fed both the
driver's own diffs and hand-made OCI layer tars with whiteouts and opaque directories.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile

import pytest

from graphdrivers import Change, Driver
from graphdrivers.errors import InvalidLayerId, LayerNotFound, UnsafeArchive

from .treeutil import mounted, read, tree, umask, write


def _changes(*pairs: str) -> list[Change]:
    """Changes from "K /path" strings, in the contract's order (sorted by path)."""
    return sorted(Change(p[2:], p[0]) for p in pairs)


def _layer(driver: Driver, layer: str, parent: str | None, build) -> str:
    driver.create(layer, parent)
    with mounted(driver, layer) as path, umask(0o022):
        build(path)
    return layer


def _big_base(path: str) -> None:
    """1,000 files in 10 x 10 nested directories, with varied modes and owners."""
    for i in range(1000):
        sub = os.path.join(path, f"d{i // 100}", f"s{(i // 10) % 10}")
        file = os.path.join(sub, f"f{i}")
        write(file, f"file {i}\n".encode() * (1 + i % 7), 0o644 if i % 3 else 0o600)
        if i % 50 == 0:
            os.chown(file, 1000 + i, 100)
    os.symlink("d0/s0/f0", os.path.join(path, "link"))
    os.link(os.path.join(path, "d0", "s0", "f1"), os.path.join(path, "hardlink"))


def _big_upper(path: str) -> None:
    for i in range(0, 1000, 20):  # modify 50
        write(os.path.join(path, f"d{i // 100}", f"s{(i // 10) % 10}", f"f{i}"), b"modified %d\n" % i)
    for i in range(5, 1000, 100):  # chmod and chown 10
        file = os.path.join(path, f"d{i // 100}", f"s{(i // 10) % 10}", f"f{i}")
        os.chown(file, 7, 8)
        os.chmod(file, 0o4750)
    for i in range(7, 1000, 50):  # delete 20
        os.unlink(os.path.join(path, f"d{i // 100}", f"s{(i // 10) % 10}", f"f{i}"))
    shutil.rmtree(os.path.join(path, "d9", "s9"))  # a whole directory
    shutil.rmtree(os.path.join(path, "d8"))  # and a whole tree
    for i in range(30):  # add 30, some in new directories
        write(os.path.join(path, "new" if i % 2 else "d1", f"n{i}"), b"added %d\n" % i)
    os.unlink(os.path.join(path, "link"))
    os.symlink("d1/n0", os.path.join(path, "link"))
    os.unlink(os.path.join(path, "d2", "s2", "f222"))
    os.mkdir(os.path.join(path, "d2", "s2", "f222"))  # a file replaced by a directory
    write(os.path.join(path, "hardlink"), b"through the hard link\n")
    os.link(os.path.join(path, "new", "n1"), os.path.join(path, "new", "n1-link"))
    os.setxattr(os.path.join(path, "d4", "s4", "f440"), "user.strata", b"kept")
    os.chmod(os.path.join(path, "d3"), 0o750)


def _same_inode(root: str, a: str, b: str) -> bool:
    return os.lstat(os.path.join(root, a)).st_ino == os.lstat(os.path.join(root, b)).st_ino


def test_diff_apply_round_trip(driver: Driver) -> None:
    _layer(driver, "base", None, _big_base)
    _layer(driver, "upper", "base", _big_upper)
    driver.create("applied", "base")
    with contextlib.closing(driver.diff("upper", "base")) as stream:
        applied = driver.apply_diff("applied", "base", stream)
    assert applied == driver.diff_size("upper", "base")
    with mounted(driver, "upper") as upper, mounted(driver, "applied") as result:
        want = tree(upper)
        assert tree(result) == want
        for path, e in want.items():  # file times travel too (whole seconds at least)
            if e.kind == "file":
                assert os.lstat(result + path).st_mtime_ns // 10**9 == os.lstat(upper + path).st_mtime_ns // 10**9
        assert os.getxattr(os.path.join(result, "d4", "s4", "f440"), "user.strata") == b"kept"
        # Hard links stay links (a union's copy-up may have split the base's pair: then split).
        assert _same_inode(result, "new/n1", "new/n1-link")
        assert _same_inode(result, "hardlink", "d0/s0/f1") == _same_inode(upper, "hardlink", "d0/s0/f1")
    assert driver.changes("applied", "base") == driver.changes("upper", "base")
    # A full export (no parent) rebuilds the base in an empty layer.
    driver.create("base-again", None)
    with contextlib.closing(driver.diff("base")) as stream:
        full = driver.apply_diff("base-again", None, stream)
    assert full == driver.diff_size("base")
    with mounted(driver, "base") as base, mounted(driver, "base-again") as again:
        assert tree(again) == tree(base)
        assert len([p for p, e in tree(base).items() if e.kind == "file"]) == 1001


def test_changes_of_a_known_mix(driver: Driver) -> None:
    def base(path: str) -> None:
        for name in ("etc/passwd", "etc/hosts", "etc/ssl/cert", "usr/bin/tool", "var/log/old", "var/log/keep"):
            write(os.path.join(path, name), b"base " + name.encode())
        write(os.path.join(path, "home/u/.profile"), b"profile")
        write(os.path.join(path, "home/u/sub/deep"), b"deep")

    def upper(path: str) -> None:
        write(os.path.join(path, "etc/hosts"), b"127.0.0.1 localhost strata\n")
        write(os.path.join(path, "etc/ssl/new"), b"new cert")
        os.unlink(os.path.join(path, "var/log/old"))
        shutil.rmtree(os.path.join(path, "home/u"))
        write(os.path.join(path, "opt/app/bin/run"), b"#!/bin/sh\n")
        os.chmod(os.path.join(path, "usr/bin/tool"), 0o700)

    _layer(driver, "base", None, base)
    _layer(driver, "upper", "base", upper)
    assert driver.changes("upper", "base") == _changes(
        "C /etc",
        "C /etc/hosts",
        "C /etc/ssl",
        "A /etc/ssl/new",
        "C /home",
        "D /home/u",
        "A /opt",
        "A /opt/app",
        "A /opt/app/bin",
        "A /opt/app/bin/run",
        "C /usr",
        "C /usr/bin",
        "C /usr/bin/tool",
        "C /var",
        "C /var/log",
        "D /var/log/old",
    )
    assert driver.changes("base") == _changes(
        "A /etc",
        "A /etc/hosts",
        "A /etc/passwd",
        "A /etc/ssl",
        "A /etc/ssl/cert",
        "A /home",
        "A /home/u",
        "A /home/u/.profile",
        "A /home/u/sub",
        "A /home/u/sub/deep",
        "A /usr",
        "A /usr/bin",
        "A /usr/bin/tool",
        "A /var",
        "A /var/log",
        "A /var/log/keep",
        "A /var/log/old",
    )
    assert driver.changes("base", None) == driver.changes("base")


def test_changes_after_deleting_and_recreating_a_nested_path(driver: Driver) -> None:
    def base(path: str) -> None:
        write(os.path.join(path, "a/b/c/file1"), b"one")
        write(os.path.join(path, "a/b/c/file2"), b"two")
        write(os.path.join(path, "a/b/other"), b"other")
        write(os.path.join(path, "a/sibling"), b"sibling")

    def upper(path: str) -> None:
        shutil.rmtree(os.path.join(path, "a/b"))
        write(os.path.join(path, "a/b/c/file1"), b"one, recreated")

    _layer(driver, "base", None, base)
    _layer(driver, "upper", "base", upper)
    assert driver.changes("upper", "base") == _changes(
        "C /a",
        "C /a/b",
        "C /a/b/c",
        "C /a/b/c/file1",
        "D /a/b/c/file2",
        "D /a/b/other",
    )
    with mounted(driver, "upper") as path:
        assert sorted(tree(path)) == ["/", "/a", "/a/b", "/a/b/c", "/a/b/c/file1", "/a/sibling"]


def test_no_changes(driver: Driver) -> None:
    _layer(driver, "base", None, lambda p: write(os.path.join(p, "x/y"), b"y"))
    driver.create("same", "base")
    assert driver.changes("same", "base") == []
    assert driver.diff_size("same", "base") == 0
    with contextlib.closing(driver.diff("same", "base")) as stream:
        assert tarfile.open(fileobj=io.BytesIO(stream.read())).getnames() == []


def _tar(*members: tuple[str, str, bytes | str | None]) -> io.BytesIO:
    """A layer tar from (name, kind, payload): kind "file", "dir", "symlink" or "hardlink"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
                tar.addfile(info)
            else:
                data = payload if isinstance(payload, bytes) else b""
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_whiteouts_and_opaque_directories_over_lower_layers(driver: Driver) -> None:
    def lower(path: str) -> None:
        for name in ("a/keep", "a/gone", "b/x", "b/y/z", "c/old", "d", "e/f/g", "h/kept"):
            write(os.path.join(path, name), b"lower " + name.encode())

    _layer(driver, "lower", None, lower)
    _layer(driver, "middle", "lower", lambda p: write(os.path.join(p, "b/from-middle"), b"middle"))
    driver.create("top", "middle")
    stream = _tar(
        ("a/.wh.gone", "file", b""),
        ("b/", "dir", None),
        ("b/.wh..wh..opq", "file", b""),
        ("b/new", "file", b"new in an opaque b"),
        ("c/.wh.old", "file", b""),
        ("c/old", "file", b"recreated after its whiteout"),
        (".wh.d", "file", b""),
        ("d/", "dir", None),
        ("d/inner", "file", b"a file became a directory"),
        (".wh.e", "file", b""),
        ("h/link", "hardlink", "h/kept"),
        ("h/sym", "symlink", "/h/kept"),
    )
    applied = driver.apply_diff("top", "middle", stream)
    assert applied == len(b"new in an opaque b") + len(b"recreated after its whiteout") + len(
        b"a file became a directory"
    )
    with mounted(driver, "top") as path:
        files = {p: e.data for p, e in tree(path).items() if e.kind in ("file", "symlink")}
        assert files == {
            "/a/keep": b"lower a/keep",
            "/b/new": b"new in an opaque b",
            "/c/old": b"recreated after its whiteout",
            "/d/inner": b"a file became a directory",
            "/h/kept": b"lower h/kept",
            "/h/link": b"lower h/kept",
            "/h/sym": "/h/kept",
        }
        assert sorted(os.listdir(path)) == ["a", "b", "c", "d", "h"]
        assert os.listdir(os.path.join(path, "b")) == ["new"]
        assert os.lstat(os.path.join(path, "h/link")).st_ino == os.lstat(os.path.join(path, "h/kept")).st_ino
        assert not any(".wh." in p for p in tree(path))
    with mounted(driver, "middle") as path:  # lower layers are untouched
        assert read(os.path.join(path, "a/gone")) == b"lower a/gone"
        assert sorted(os.listdir(os.path.join(path, "b"))) == ["from-middle", "x", "y"]
        assert os.path.isfile(os.path.join(path, "d"))
    assert driver.changes("top", "middle") == _changes(
        "C /a",
        "D /a/gone",
        "C /b",
        "A /b/new",
        "D /b/from-middle",
        "D /b/x",
        "D /b/y",
        "C /c",
        "C /c/old",
        "C /d",
        "A /d/inner",
        "D /e",
        "C /h",
        "A /h/link",
        "A /h/sym",
    )


def test_unsafe_archive_is_refused_and_changes_nothing(driver: Driver) -> None:
    _layer(driver, "lower", None, lambda p: write(os.path.join(p, "etc/passwd"), b"root"))
    driver.create("victim", "lower")
    with mounted(driver, "victim") as path:
        before = tree(path)
    hostile = _tar(
        ("fine", "file", b"would be fine"),
        ("etc/.wh.passwd", "file", b""),
        ("../../escaped", "file", b"outside the layer"),
    )
    with pytest.raises(UnsafeArchive):
        driver.apply_diff("victim", "lower", hostile)
    with mounted(driver, "victim") as path:
        assert tree(path) == before
    assert driver.changes("victim", "lower") == []


def test_diff_calls_on_unknown_layers(driver: Driver) -> None:
    driver.create("known")
    for call in (
        lambda: driver.changes("nope"),
        lambda: driver.changes("known", "nope"),
        lambda: driver.diff_size("nope"),
        lambda: driver.diff("nope"),
        lambda: driver.diff("known", "nope"),
        lambda: driver.apply_diff("nope", None, _tar()),
    ):
        with pytest.raises(LayerNotFound):
            call()
    with pytest.raises(InvalidLayerId):
        driver.changes("../known")
    # Nothing was left mounted by the failed calls: the layer can go.
    driver.remove("known")

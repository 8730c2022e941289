"""Conformance: layer lifecycle, contents through the mount, chains, persistence.

Runs for every registered driver on the backing filesystem it registered for; a new
driver is covered by registering itself. Only the contract and plain file access in the
directory `get` returns are used.
"""

from __future__ import annotations

import os
import stat
import threading

import pytest

import graphdrivers
from graphdrivers import Driver, mountutil

from ..conftest import resolve_driver
from .conftest import BASE_BYTES, BASE_DIR_MODE, BASE_DIR_OWNER, BASE_FILE_MODE
from .treeutil import Entry, mounted, read, tree, write

BASE_TREE = {
    "/dir": Entry("dir", BASE_DIR_MODE, *BASE_DIR_OWNER),
    "/file": Entry("file", BASE_FILE_MODE, 0, 0, BASE_BYTES),
}


def _without_root(t: dict[str, Entry]) -> dict[str, Entry]:
    return {p: e for p, e in t.items() if p != "/"}


def test_empty_layer(driver: Driver) -> None:
    driver.create("empty")
    assert driver.exists("empty")
    path = driver.get("empty")
    try:
        st = os.lstat(path)
        assert stat.S_ISDIR(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o755
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert os.listdir(path) == []
    finally:
        driver.put("empty")
    driver.remove("empty")
    assert not driver.exists("empty")


def test_empty_read_write_layer(driver: Driver) -> None:
    driver.create_read_write("rw")
    with mounted(driver, "rw") as path:
        assert os.listdir(path) == []
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o755
        write(os.path.join(path, "a"), b"x")
    driver.remove("rw")
    assert not driver.exists("rw")


def test_base_layer_written_through_mount(driver: Driver, base: str) -> None:
    with mounted(driver, base) as path:
        got = tree(path)
        assert _without_root(got) == BASE_TREE
        assert sorted(os.listdir(path)) == ["dir", "file"]
        assert os.listdir(os.path.join(path, "dir")) == []
        assert got["/"].mode == 0o755 and (got["/"].uid, got["/"].gid) == (0, 0)


def test_snapshot_of_base_is_identical(driver: Driver, base: str) -> None:
    with mounted(driver, base) as path:
        want = tree(path)
    driver.create("snap", base)
    with mounted(driver, "snap") as path:
        assert tree(path) == want
    driver.create_read_write("snap-rw", "snap")
    with mounted(driver, "snap-rw") as path:
        assert tree(path) == want


def test_child_changes_do_not_reach_parent(driver: Driver, base: str) -> None:
    driver.create_read_write("child", base)
    with mounted(driver, "child") as path:
        write(os.path.join(path, "file"), b"changed")
        os.chmod(os.path.join(path, "dir"), 0o700)
        write(os.path.join(path, "dir", "new"), b"new")
        os.unlink(os.path.join(path, "file"))
    with mounted(driver, base) as path:
        assert _without_root(tree(path)) == BASE_TREE
    with mounted(driver, "child") as path:
        assert sorted(tree(path)) == ["/", "/dir", "/dir/new"]


def test_special_files_survive_a_snapshot(driver: Driver) -> None:
    """Hard links, symlinks (dangling too), fifos, devices, sparse files, empty files."""
    driver.create_read_write("special")
    with mounted(driver, "special") as path:
        write(os.path.join(path, "d", "f"), b"linked")
        os.link(os.path.join(path, "d", "f"), os.path.join(path, "hardlink"))
        os.symlink("d/f", os.path.join(path, "rel"))
        os.symlink("/nowhere/at/all", os.path.join(path, "dangling"))
        os.mkfifo(os.path.join(path, "fifo"), 0o640)
        os.mknod(os.path.join(path, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.lchown(os.path.join(path, "rel"), 7, 8)
        with open(os.path.join(path, "sparse"), "wb") as f:
            f.truncate(64 << 20)
            f.seek(32 << 20)
            f.write(b"middle")
        write(os.path.join(path, "empty"), b"")
        want = tree(path)
    driver.create("special-child", "special")
    with mounted(driver, "special-child") as path:
        assert tree(path) == want
        a, b = os.lstat(os.path.join(path, "d", "f")), os.lstat(os.path.join(path, "hardlink"))
        assert a.st_ino == b.st_ino and a.st_nlink == 2
        sparse = os.lstat(os.path.join(path, "sparse"))
        assert sparse.st_size == 64 << 20
        assert sparse.st_blocks * 512 < 8 << 20, "the copy of a sparse file filled its holes"


def test_deep_chain(driver: Driver) -> None:
    """130 layers, each adding a file and overwriting a shared one; every level reads right."""
    depth = 130
    parent = None
    for i in range(depth):
        layer = f"chain{i}"
        driver.create(layer, parent)
        with mounted(driver, layer) as path:
            if i == 0:
                write(os.path.join(path, "bottom"), BASE_BYTES, 0o640)
            write(os.path.join(path, "files", str(i)), f"layer {i}\n".encode())
            write(os.path.join(path, "shared"), f"overwritten by layer {i}\n".encode())
        parent = layer
    for level in (depth - 1, 64, 0):
        with mounted(driver, f"chain{level}") as path:
            assert read(os.path.join(path, "bottom")) == BASE_BYTES
            assert stat.S_IMODE(os.lstat(os.path.join(path, "bottom")).st_mode) == 0o640
            assert read(os.path.join(path, "shared")) == f"overwritten by layer {level}\n".encode()
            names = sorted(os.listdir(os.path.join(path, "files")), key=int)
            assert names == [str(i) for i in range(level + 1)]
            assert all(read(os.path.join(path, "files", n)) == f"layer {n}\n".encode() for n in names)


def test_get_put_reference_counting(driver: Driver, base: str) -> None:
    first = driver.get(base)
    second = driver.get(base)
    assert first == second
    driver.put(base)
    assert read(os.path.join(first, "file")) == BASE_BYTES  # one reference left: still usable
    write(os.path.join(first, "more"), b"still writable")
    with pytest.raises(graphdrivers.errors.LayerInUse):
        driver.remove(base)
    driver.put(base)
    with pytest.raises(graphdrivers.errors.LayerNotMounted):
        driver.put(base)
    with mounted(driver, base) as path:
        assert read(os.path.join(path, "more")) == b"still writable"


def test_remove_while_mounted_is_refused(driver: Driver, base: str) -> None:
    path = driver.get(base)
    try:
        with pytest.raises(graphdrivers.errors.LayerInUse):
            driver.remove(base)
        assert driver.exists(base)
        assert read(os.path.join(path, "file")) == BASE_BYTES
    finally:
        driver.put(base)
    driver.remove(base)
    assert not driver.exists(base)
    with pytest.raises(graphdrivers.errors.LayerNotFound):
        driver.get(base)


def test_remove_child_leaves_parent(driver: Driver, base: str) -> None:
    driver.create("leaf", base)
    with mounted(driver, "leaf") as path:
        write(os.path.join(path, "dir", "x"), b"x")
    driver.remove("leaf")
    assert not driver.exists("leaf") and driver.exists(base)
    with mounted(driver, base) as path:
        assert _without_root(tree(path)) == BASE_TREE


def test_cleanup_unmounts_and_layers_survive_a_new_instance(
    driver_name: str, driver_root: str, driver: Driver, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver.create("child", base)
    driver.get(base)
    driver.get("child")
    driver.cleanup()
    assert mountutil.mounts_under(driver_root) == [], "cleanup left mounts behind"
    with pytest.raises(graphdrivers.errors.DriverError):
        driver.get(base)  # a cleaned-up driver is unusable
    monkeypatch.delenv("DOCKER_DRIVER", raising=False)
    again = graphdrivers.get_driver(root=driver_root)  # chosen by its prior storage
    try:
        assert again.name == resolve_driver(driver_name)[0]
        assert again.exists(base) and again.exists("child")
        for layer in (base, "child"):
            with mounted(again, layer) as path:
                assert _without_root(tree(path)) == BASE_TREE
        again.remove("child")
        assert not again.exists("child")
    finally:
        again.cleanup()


def test_status_and_metadata(driver: Driver, base: str) -> None:
    rows = driver.status()
    assert rows and all(isinstance(k, str) and isinstance(v, str) and k for k, v in rows)
    meta = driver.metadata(base)
    assert isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert all(k[:1].isupper() and k.isalnum() for k in meta), f"metadata keys are CamelCase, as Docker's: {meta}"
    with pytest.raises(graphdrivers.errors.LayerNotFound):
        driver.metadata("no-such-layer")


def test_concurrent_get_put(driver: Driver, base: str) -> None:
    """Reference counts are thread-safe: many threads mounting and releasing one layer."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                path = driver.get(base)
                assert read(os.path.join(path, "file")) == BASE_BYTES
                driver.put(base)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pytest.raises(graphdrivers.errors.LayerNotMounted):
        driver.put(base)  # every get was matched: nothing is held
    driver.remove(base)


def test_id_reused_after_remove_is_a_new_layer(driver: Driver, base: str) -> None:
    driver.remove(base)
    driver.create(base)
    with mounted(driver, base) as path:
        assert os.listdir(path) == []


def _mounts_at(path: str) -> int:
    return sum(1 for point, _, _ in mountutil.mount_table() if point == os.path.realpath(path))


def test_a_disowned_layer_is_taken_over_by_get_and_never_removed(driver_name: str, driver_root: str) -> None:
    """A layer left mounted for a running detached container: a later instance may not remove
    it (its files would go from under the container), and its `get` takes the mount over --
    the same path and files, no second mount on it -- so its `put` ends it."""
    name, options = resolve_driver(driver_name)
    first = graphdrivers.get_driver(name, root=driver_root, options=options)
    try:
        first.create_read_write("ctr")
        path = first.get("ctr")
        write(os.path.join(path, "alive"), b"running\n")
        if first.disown_unsupported() is not None:
            with pytest.raises(graphdrivers.errors.DriverError, match="cannot leave layer ctr mounted"):
                first.disown("ctr")
            first.put("ctr")
            return
        assert first.disown("ctr") == path
        mounts = _mounts_at(path)
    finally:
        first.cleanup()
    later = graphdrivers.get_driver(name, root=driver_root, options=options)
    try:
        assert later.is_disowned("ctr") and _mounts_at(path) == mounts  # still mounted for the container
        with pytest.raises(graphdrivers.errors.LayerInUse, match="left it mounted for a running container"):
            later.remove("ctr")
        assert later.get("ctr") == path and _mounts_at(path) == mounts
        assert read(os.path.join(path, "alive")) == b"running\n" and not later.is_disowned("ctr")
        later.put("ctr")
        assert _mounts_at(path) == 0
        later.remove("ctr")
        assert not later.exists("ctr")
    finally:
        later.cleanup()
    assert mountutil.mounts_under(driver_root) == []


def test_an_incomplete_disowned_record_names_no_mount(driver: Driver) -> None:
    """A crash while an older version wrote a record in place left it empty: it must not read
    as the current directory (recovery would spare, or unmount, the wrong path)."""
    records = os.path.join(driver.home, graphdrivers.driver.DISOWNED_DIR)
    os.makedirs(records, exist_ok=True)
    open(os.path.join(records, "gone"), "w").close()
    with open(os.path.join(records, graphdrivers.driver.PARTIAL + "half"), "w") as f:
        f.write(driver.home)
    assert driver.disowned_mounts() == set() and not driver.is_disowned("gone")

"""Load, save, inspect, tag, rmi, import on every registered driver, through jobs."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil

import pytest

from engine.engine import Engine
from engine.errors import Conflict, ImageInUse, NoSuchImage
from engine.images import view as imageview
from engine.images.graph import chain_id
from tests.engine.conftest import Images, assert_clean, chains, heavy_drivers, run


def _rootfs_checks(engine: Engine, top: str, big_size: int) -> None:
    path = engine.driver.get(top)
    try:
        with open(os.path.join(path, "bin/busybox"), "rb") as f, open("/bin/busybox", "rb") as host:
            assert f.read() == host.read()
        assert os.stat(os.path.join(path, "bin/busybox")).st_mode & 0o777 == 0o755
        assert os.readlink(os.path.join(path, "bin/sh")) == "/bin/busybox"
        assert os.stat(os.path.join(path, "tmp")).st_mode & 0o7777 == 0o1777
        assert os.path.getsize(os.path.join(path, "data/big.bin")) == big_size
        assert not os.path.lexists(os.path.join(path, "data/small/0000"))  # whited out above
        assert not os.path.lexists(os.path.join(path, "etc/motd"))
        with open(os.path.join(path, "data/small/0002"), "rb") as f:
            assert f.read() == b"small file 2\n" * 3
        assert os.path.exists(os.path.join(path, "data/DELETED"))
    finally:
        engine.driver.put(top)


def test_load_inspect_save_and_round_trip(engine: Engine, make_engine, images: Images, tmp_path) -> None:
    status, out, err = run(engine, "load", images.multi_tar)
    assert (status, err) == (0, "")
    assert out == "Loaded image: busybox:latest\nLoaded image: strata/multi:latest\n"
    multi = engine.graph.get_image("strata/multi")
    assert multi.id == images.multi.id
    assert [la.diff_id for la in multi.layers] == images.multi.diff_ids
    assert multi.parent == images.multi.parent == images.multi.intermediates[-1].id
    assert len(engine.graph.layers()) == 4  # the busybox layer is shared by both images
    _rootfs_checks(engine, multi.top_layer, 1 << 20)

    status, out, _ = run(engine, "inspect", "strata/multi:latest")
    [doc] = json.loads(out)
    assert doc["Id"] == images.multi.id and doc["RepoTags"] == ["strata/multi:latest"]
    assert doc["RootFS"] == {"Type": "layers", "Layers": images.multi.diff_ids}
    assert doc["GraphDriver"]["Name"] == engine.driver.name
    assert doc["Size"] == multi.size > 1 << 20

    saved = str(tmp_path / "saved.tar")
    with open(saved, "wb") as f:
        assert engine.job("save", "strata/multi", "busybox:latest", stdout=f).run() == 0
    fresh = make_engine()
    assert run(fresh, "load", saved)[0] == 0
    again = fresh.graph.get_image("strata/multi:latest")
    assert again.id == multi.id
    assert [la.chain_id for la in again.layers] == [la.chain_id for la in multi.layers]
    assert fresh.graph.get_image("busybox").id == images.busybox.id
    assert again.parent is None  # its parent (an untagged step) was not saved
    resaved = str(tmp_path / "resaved.tar")
    with open(resaved, "wb") as f:
        assert fresh.job("save", "strata/multi", "busybox:latest", stdout=f).run() == 0
    with open(saved, "rb") as a, open(resaved, "rb") as b:
        assert hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()


def test_present_layers_are_not_applied_again(engine: Engine, images: Images) -> None:
    assert run(engine, "load", images.busybox_tar)[0] == 0
    base = chain_id(None, images.busybox.diff_ids[0])
    before = os.stat(engine.graph.tarsplit_path(base))
    assert run(engine, "load", images.multi_tar)[0] == 0
    after = os.stat(engine.graph.tarsplit_path(base))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert run(engine, "load", images.multi_tar)[0] == 0  # loading twice changes nothing
    assert len(engine.graph.images()) == 4 and len(engine.graph.layers()) == 4


def test_rmi_removes_only_unshared_layers(engine: Engine, images: Images) -> None:
    assert run(engine, "load", images.multi_tar)[0] == 0
    base = chain_id(None, images.busybox.diff_ids[0])
    assert engine.graph.layer_users(base) == sorted(i.id for i in images.chain)
    status, out, _ = run(engine, "rmi", "strata/multi")
    assert status == 0
    steps = [i.id for i in reversed(images.multi.intermediates)]  # untagged parents go too, as in docker
    assert out == f"Untagged: strata/multi:latest\nDeleted: {images.multi.id}\n" + "".join(
        f"Deleted: {s}\n" for s in steps)
    assert [i.id for i in engine.graph.images()] == [images.busybox.id]
    assert [la.chain_id for la in engine.graph.layers()] == [base]
    assert [c for c in chains(images.multi) if engine.driver.exists(c)] == [base]
    assert run(engine, "rmi", "busybox")[0] == 0
    assert_clean(engine, images.multi)


def test_tags_and_rmi_rules(engine: Engine, images: Images) -> None:
    assert run(engine, "load", images.multi_tar)[0] == 0
    assert run(engine, "tag", "busybox", "mirror/busybox:1.36")[0] == 0
    assert engine.graph.get_image("mirror/busybox:1.36").id == images.busybox.id
    with pytest.raises(Conflict, match="referenced in multiple repositories"):
        engine.graph.delete(images.busybox.id[7:19])
    assert engine.graph.delete("mirror/busybox:1.36") == ["Untagged: mirror/busybox:1.36"]
    # busybox has a child image: untagging is allowed, deleting is not, even by force
    with pytest.raises(ImageInUse, match="dependent child images"):
        engine.graph.delete(images.busybox.id, force=True)
    assert engine.graph.delete("busybox") == ["Untagged: busybox:latest"]
    assert engine.graph.get_image(images.busybox.id).tags == []
    assert images.busybox.id[7:19] not in run(engine, "images")[1]  # an intermediate image now
    assert images.busybox.id[7:19] in run(engine, "images", all="1")[1]
    with pytest.raises(NoSuchImage):
        engine.graph.get_image("busybox")
    status, _, err = run(engine, "tag", "nope", "x")
    assert status == 1 and err == "Error: no such image: nope\n"
    status, _, err = run(engine, "tag", "strata/multi", "Bad Name")
    assert status == 1 and "invalid reference" in err


def test_an_image_used_by_a_container_is_kept(engine: Engine, images: Images) -> None:
    assert run(engine, "load", images.busybox_tar)[0] == 0
    engine.db.add_entity("c0ffee", "container")
    engine.db.add_edge("c0ffee", "image", images.busybox.id)
    with pytest.raises(ImageInUse, match="used by container c0ffee"):
        engine.graph.delete("busybox")
    status, out, _ = run(engine, "rmi", "busybox", force="1")
    assert (status, out) == (0, "Untagged: busybox:latest\n")
    top = engine.graph.get_image(images.busybox.id).top_layer
    assert engine.driver.exists(top)
    engine.db.remove_entity("c0ffee")
    assert run(engine, "rmi", images.busybox.id)[0] == 0
    assert_clean(engine, images.busybox)


def test_import_makes_a_one_layer_image(engine: Engine, images: Images, tmp_path) -> None:
    rootfs = str(tmp_path / "rootfs.tar.gz")
    with open(images.busybox.layer_files[0], "rb") as src, gzip.open(rootfs, "wb") as dst:
        shutil.copyfileobj(src, dst)
    status, out, err = run(engine, "import", rootfs, "imported:v1")
    assert status == 0, err
    image = engine.graph.get_image("imported:v1")
    assert out == image.id + "\n"
    assert [la.diff_id for la in image.layers] == images.busybox.diff_ids  # diff id of the uncompressed tar
    path = engine.driver.get(image.top_layer)
    try:
        assert os.path.getsize(os.path.join(path, "bin/busybox")) == os.path.getsize("/bin/busybox")
    finally:
        engine.driver.put(image.top_layer)
    rows = json.loads(run(engine, "history", "imported:v1", json="1")[1])
    assert rows[0]["Comment"] == f"Imported from {rootfs}" and rows[0]["Id"] == image.id


def test_images_tree_history_info(engine: Engine, images: Images) -> None:
    assert run(engine, "load", images.multi_tar)[0] == 0
    table = run(engine, "images")[1].splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert {tuple(line.split()[:3]) for line in table[1:]} == {
        ("busybox", "latest", images.busybox.id[7:19]), ("strata/multi", "latest", images.multi.id[7:19])}
    tree = run(engine, "images", tree="1")[1]
    sizes = [engine.graph.get_image(i.id).size for i in images.chain]
    assert tree.splitlines() == [
        f"└─{images.busybox.id[7:19]} Virtual Size: {imageview.size(sizes[0])} Tags: busybox:latest",
        f"  └─{images.chain[1].id[7:19]} Virtual Size: {imageview.size(sizes[1])}",
        f"    └─{images.chain[2].id[7:19]} Virtual Size: {imageview.size(sizes[2])}",
        f"      └─{images.multi.id[7:19]} Virtual Size: {imageview.size(sizes[3])} Tags: strata/multi:latest",
    ]
    history = run(engine, "history", "strata/multi")[1].splitlines()
    assert len(history) == 5 and history[1].startswith(images.multi.id[7:19])
    assert "rm /data/small/0000" in history[1] and history[4].startswith("<missing>")
    info = json.loads(run(engine, "info", json="1")[1])
    assert (info["Images"], info["Layers"], info["Containers"]) == (4, 4, 0)
    assert info["Driver"] == engine.driver.name and info["DockerRootDir"] == engine.root
    assert [list(r) for r in engine.driver.status()] == info["DriverStatus"]
    text = run(engine, "info")[1]
    assert f"Storage Driver: {engine.driver.name}\n" in text and f"Docker Root Dir: {engine.root}\n" in text
    assert f"Kernel Version: {os.uname().release}\n" in text and info["NCPU"] == os.cpu_count()


@pytest.mark.parametrize("driver_name", heavy_drivers())
def test_the_100mb_multilayer_image(engine: Engine, big_images: Images) -> None:
    assert run(engine, "load", big_images.multi_tar)[0] == 0
    multi = engine.graph.get_image("strata/multi")
    _rootfs_checks(engine, multi.top_layer, 100 << 20)
    path = engine.driver.get(multi.top_layer)
    try:
        assert len(os.listdir(os.path.join(path, "data/small"))) == 998
    finally:
        engine.driver.put(multi.top_layer)
    assert run(engine, "rmi", "strata/multi", "busybox")[0] == 0
    assert_clean(engine, big_images.multi)


def test_load_reports_progress(vfs_engine: Engine, images: Images) -> None:
    events: list[dict] = []
    job = vfs_engine.job("load", images.multi_tar)
    job.progress = events.append
    assert job.run() == 0
    loads = [e for e in events if e["action"] == "load"]
    assert loads[-1]["current"] == loads[-1]["total"] == sum(
        os.path.getsize(f) for image in images.chain for f in image.layer_files)
    in_archive_order = [images.busybox, images.multi, *images.multi.intermediates]
    assert [e["diff_id"] for e in events if e["action"] == "layer"] == [d for i in in_archive_order for d in i.diff_ids]


def test_save_refuses_a_layer_whose_files_changed(vfs_engine: Engine, images: Images, tmp_path) -> None:
    assert run(vfs_engine, "load", images.busybox_tar)[0] == 0
    image = vfs_engine.graph.get_image("busybox")
    path = vfs_engine.driver.get(image.top_layer)
    try:
        with open(os.path.join(path, "etc/passwd"), "r+b") as f:  # same length, other bytes
            f.write(b"ROOT")
    finally:
        vfs_engine.driver.put(image.top_layer)
    with open(tmp_path / "out.tar", "wb") as f:
        job = vfs_engine.job("save", "busybox", stdout=f)
        assert job.run() == 1
    assert "no longer matches its diff id" in job.stderr.getvalue().decode()


def test_a_layer_lost_by_the_driver_is_reported_and_recoverable(vfs_engine: Engine, images: Images) -> None:
    assert run(vfs_engine, "load", images.busybox_tar)[0] == 0
    top = vfs_engine.graph.get_image("busybox").top_layer
    vfs_engine.driver.remove(top)  # behind the engine's back
    status, _, err = run(vfs_engine, "load", images.multi_tar)
    assert status == 1 and "missing from the vfs driver" in err and images.busybox.id[7:19] in err
    assert run(vfs_engine, "rmi", "busybox")[0] == 0
    assert run(vfs_engine, "load", images.multi_tar)[0] == 0
    assert vfs_engine.driver.exists(top)

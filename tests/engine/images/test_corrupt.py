"""Corrupted and hostile inputs fail with a clear error and leave no trace."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile

import pytest

from engine.engine import Engine
from engine.errors import InvalidArchive
from engine.images import testimages
from tests.engine.conftest import Images, assert_clean


def _multi(manifest: list[dict]) -> dict:
    return next(entry for entry in manifest if entry["RepoTags"] == ["strata/multi:latest"])


def _load_fails(engine: Engine, path: str, match: str) -> None:
    job = engine.job("load", path)
    assert job.run() == 1
    err = job.stderr.getvalue().decode()
    assert err.count("\n") == 1 and err.startswith("Error: "), err
    assert isinstance(job.error, InvalidArchive) and match in str(job.error), err


def _extract(archive: str, dest: str) -> str:
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    return dest


def _flip_data_byte(path: str) -> None:
    """Damage file data (not a header) of an uncompressed layer tar: only a digest can tell."""
    with tarfile.open(path) as tf:
        offset = next(m.offset_data for m in tf if m.isfile() and m.size > 0)
    _flip_byte(path, offset)


def _flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _layer_blob(layout_dir: str, index: int) -> str:
    index_json = json.load(open(os.path.join(layout_dir, "index.json")))
    digest = index_json["manifests"][0]["digest"].split(":")[1]
    manifest = json.load(open(os.path.join(layout_dir, "blobs/sha256", digest)))
    return os.path.join(layout_dir, "blobs/sha256", manifest["layers"][index]["digest"].split(":")[1])


def test_a_blob_whose_digest_does_not_match(vfs_engine: Engine, images: Images, tmp_path) -> None:
    layout = testimages.write(str(tmp_path / "oci"), [images.multi], "oci-dir", "none")
    _flip_data_byte(_layer_blob(layout, 2))
    _load_fails(vfs_engine, layout, "does not match")
    assert_clean(vfs_engine, images.multi)


def test_a_layer_whose_content_does_not_match_the_config(vfs_engine: Engine, images: Images, tmp_path) -> None:
    legacy = _extract(images.archive("legacy.tar", [images.busybox, images.multi], "legacy"), str(tmp_path / "x"))
    manifest = json.load(open(os.path.join(legacy, "manifest.json")))
    _flip_data_byte(os.path.join(legacy, _multi(manifest)["Layers"][1]))
    _load_fails(vfs_engine, legacy, "does not match the config's diff id")
    assert_clean(vfs_engine, images.busybox, images.multi)  # the good first image is not kept either


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_truncated_layer(vfs_engine: Engine, images: Images, tmp_path, compression: str) -> None:
    if compression == "none":
        legacy = _extract(images.archive("legacy.tar", [images.busybox, images.multi], "legacy"), str(tmp_path / "x"))
        layer = os.path.join(legacy, _multi(json.load(open(os.path.join(legacy, "manifest.json"))))["Layers"][1])
        os.truncate(layer, os.path.getsize(layer) // 2)
        _load_fails(vfs_engine, legacy, "layer")
    else:
        layout = testimages.write(str(tmp_path / "oci"), [images.multi], "oci-dir", "gzip")
        blob = _layer_blob(layout, 1)
        os.truncate(blob, os.path.getsize(blob) // 2)
        _load_fails(vfs_engine, layout, "the manifest says")  # sizes are checked before any apply
    assert_clean(vfs_engine, images.busybox, images.multi)


def test_a_manifest_naming_a_missing_blob(vfs_engine: Engine, images: Images, tmp_path) -> None:
    docker = _extract(images.multi_tar, str(tmp_path / "x"))
    manifest = json.load(open(os.path.join(docker, "manifest.json")))
    os.unlink(os.path.join(docker, _multi(manifest)["Layers"][3]))
    _load_fails(vfs_engine, docker, "missing from the archive")
    assert_clean(vfs_engine, images.multi)


@pytest.mark.parametrize("damage", ["not json", "no layers", "count", "config", "oci-config"])
def test_malformed_manifests(vfs_engine: Engine, images: Images, tmp_path, damage: str) -> None:
    if damage == "oci-config":
        layout = testimages.write(str(tmp_path / "oci"), [images.busybox], "oci-dir", "gzip")
        index = json.load(open(os.path.join(layout, "index.json")))
        manifest_path = os.path.join(layout, "blobs/sha256", index["manifests"][0]["digest"].split(":")[1])
        manifest = json.load(open(manifest_path))
        os.unlink(os.path.join(layout, "blobs/sha256", manifest["config"]["digest"].split(":")[1]))
        _load_fails(vfs_engine, layout, "missing from the archive")
        assert_clean(vfs_engine, images.busybox)
        return
    docker = _extract(images.multi_tar, str(tmp_path / "x"))
    path = os.path.join(docker, "manifest.json")
    manifest = json.load(open(path))
    expected = {"not json": "not valid JSON", "no layers": "without Config and Layers",
                "count": "lists 3 layers, the config 4", "config": "does not match its name"}[damage]
    if damage == "not json":
        open(path, "w").write("{not json")
    elif damage == "no layers":
        del _multi(manifest)["Layers"]
    elif damage == "count":
        _multi(manifest)["Layers"].pop()
    elif damage == "config":
        open(os.path.join(docker, _multi(manifest)["Config"]), "ab").write(b" ")
    if damage != "not json":
        json.dump(manifest, open(path, "w"))
    _load_fails(vfs_engine, docker, expected)
    assert_clean(vfs_engine, images.multi)


def _hostile_layer(path: str, outside: str) -> str:
    with tarfile.open(path, "w") as tf:
        good = tarfile.TarInfo("ok.txt")
        good.size = 3
        tf.addfile(good, io.BytesIO(b"ok\n"))
        evil = tarfile.TarInfo("../" * 8 + outside.lstrip("/") + "/escaped")
        evil.size = 5
        tf.addfile(evil, io.BytesIO(b"evil\n"))
    return path


def test_a_hostile_layer_is_refused_on_every_driver(engine: Engine, images: Images, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile = testimages.from_layers(["evil:latest"], [images.busybox.layer_files[0],
                                                      _hostile_layer(str(tmp_path / "evil.tar"), str(outside))])
    archive = testimages.write(str(tmp_path / "evil-archive.tar"), [hostile])
    _load_fails(engine, archive, "refused")
    assert os.listdir(outside) == []
    assert_clean(engine, hostile)


def test_not_an_archive(vfs_engine: Engine, tmp_path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not a tar")
    _load_fails(vfs_engine, str(junk), "not a readable image archive")
    empty = tmp_path / "empty"
    empty.mkdir()
    _load_fails(vfs_engine, str(empty), "neither a docker save archive")
    _load_fails(vfs_engine, str(tmp_path / "nothing-here"), "no such file")
    shutil.rmtree(empty)


def test_a_manifest_path_outside_the_layout_is_refused(vfs_engine: Engine, images: Images, tmp_path) -> None:
    """Names resolve inside the layout (`..` stops at its root); a symlink out is refused."""
    docker = _extract(images.busybox_tar, str(tmp_path / "x"))
    shutil.copy(images.busybox.layer_files[0], tmp_path / "outside.tar")
    path = os.path.join(docker, "manifest.json")
    manifest = json.load(open(path))
    manifest[0]["Layers"] = ["../outside.tar"]
    json.dump(manifest, open(path, "w"))
    _load_fails(vfs_engine, docker, "missing from the archive")
    os.symlink("../outside.tar", os.path.join(docker, "escape.tar"))
    manifest[0]["Layers"] = ["escape.tar"]
    json.dump(manifest, open(path, "w"))
    _load_fails(vfs_engine, docker, "outside the image layout")
    assert_clean(vfs_engine, images.busybox)

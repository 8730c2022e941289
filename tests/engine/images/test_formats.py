"""Every archive layout loads, and what `save` writes follows the image specs.

No dockerd is installed here (and `make test` must not install one), so `save` output is
checked against the OCI image-layout/manifest specs and the `docker load` manifest.json
format instead of being fed to a real `docker load`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from engine.engine import Engine
from engine.images import testimages
from engine.images.save import docker_valid_parent
from tests.engine.conftest import Images, run


@pytest.mark.parametrize(("layout", "compression"), [
    ("docker", "none"), ("legacy", "none"), ("legacy-dir", "none"), ("docker-gz", "none"),
    ("oci-dir", "gzip"), ("oci-tar", "zstd"), ("oci-dir", "none"),
])
def test_every_layout_loads_the_same_image(vfs_engine: Engine, images: Images, tmp_path, layout: str,
                                           compression: str) -> None:
    if layout == "legacy-dir":
        path = str(tmp_path / "legacy")
        with tarfile.open(images.archive("legacy.tar", [images.busybox, images.multi], "legacy")) as tf:
            tf.extractall(path, filter="data")
    elif layout == "docker-gz":  # `docker save | gzip` is accepted by docker load, so by us
        path = str(tmp_path / "save.tar.gz")
        with open(images.multi_tar, "rb") as src, gzip.open(path, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
    else:
        path = images.archive(f"{layout}-{compression}", [images.multi] if layout.startswith("oci")
                              else [images.busybox, images.multi], layout, compression)
    status, out, err = run(vfs_engine, "load", path)
    assert status == 0, err
    assert "Loaded image: strata/multi:latest\n" in out
    image = vfs_engine.graph.get_image("strata/multi:latest")
    assert image.id == images.multi.id
    assert [la.diff_id for la in image.layers] == images.multi.diff_ids


def _blob(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    assert f is not None, name
    return f.read()


def test_save_follows_the_image_spec_and_docker_load_format(vfs_engine: Engine, images: Images, tmp_path) -> None:
    assert run(vfs_engine, "load", images.multi_tar)[0] == 0
    assert run(vfs_engine, "tag", "busybox", "registry.example:5000/team/busybox:1")[0] == 0
    out = tmp_path / "saved.tar"
    with open(out, "wb") as f:
        steps = [i.id for i in images.multi.intermediates]  # named by id: saved untagged
        job = vfs_engine.job("save", "strata/multi", "busybox", "registry.example:5000/team/busybox:1", *steps,
                             stdout=f)
        assert job.run() == 0
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            assert not member.name.startswith("/") and ".." not in member.name.split("/")
            assert member.isfile() or member.isdir()
        names = set(tar.getnames())
        # OCI image layout
        assert json.loads(_blob(tar, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads(_blob(tar, "index.json"))
        assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        refs = {}
        for desc in index["manifests"]:
            assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
            data = _blob(tar, "blobs/sha256/" + desc["digest"].split(":")[1])
            assert desc["digest"] == "sha256:" + hashlib.sha256(data).hexdigest() and desc["size"] == len(data)
            if "annotations" in desc:  # the untagged steps have no name
                refs[desc["annotations"]["io.containerd.image.name"]] = desc["annotations"][
                    "org.opencontainers.image.ref.name"]
            manifest = json.loads(data)
            assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == desc["mediaType"]
            config_desc = manifest["config"]
            assert config_desc["mediaType"] == "application/vnd.oci.image.config.v1+json"
            config = _blob(tar, "blobs/sha256/" + config_desc["digest"].split(":")[1])
            assert config_desc["digest"] == "sha256:" + hashlib.sha256(config).hexdigest()
            assert config_desc["size"] == len(config)
            diff_ids = json.loads(config)["rootfs"]["diff_ids"]
            assert [la["digest"] for la in manifest["layers"]] == diff_ids
            for layer in manifest["layers"]:
                assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
                blob = _blob(tar, "blobs/sha256/" + layer["digest"].split(":")[1])
                assert layer["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest() and layer["size"] == len(blob)
        assert refs == {"docker.io/strata/multi:latest": "latest", "docker.io/library/busybox:latest": "latest",
                        "registry.example:5000/team/busybox:1": "1"}
        # docker load's manifest.json and repositories
        manifest_json = json.loads(_blob(tar, "manifest.json"))
        by_tags = {tuple(entry["RepoTags"] or [entry["Config"]]): entry for entry in manifest_json}
        assert set(by_tags) == {("strata/multi:latest",), ("busybox:latest", "registry.example:5000/team/busybox:1"),
                                *((f"blobs/sha256/{s.split(':')[1]}",) for s in steps)}
        multi = by_tags[("strata/multi:latest",)]
        assert multi["Config"] == "blobs/sha256/" + images.multi.id.split(":")[1]
        assert multi["Layers"] == ["blobs/sha256/" + d.split(":")[1] for d in images.multi.diff_ids]
        # docker load accepts a Parent only one history step away (moby's checkValidParent)
        assert multi["Parent"] == steps[-1]
        assert [by_tags[(f"blobs/sha256/{s.split(':')[1]}",)]["Parent"] for s in steps] == [images.busybox.id,
                                                                                            steps[0]]
        assert "Parent" not in by_tags[("busybox:latest", "registry.example:5000/team/busybox:1")]
        assert all(name in names for entry in manifest_json for name in [entry["Config"], *entry["Layers"]])
        repositories = json.loads(_blob(tar, "repositories"))
        assert repositories["strata/multi"] == {"latest": images.multi.diff_ids[-1].split(":")[1]}


@pytest.mark.parametrize("as_tar", [True, False])
def test_docker_legacy_symlinked_layer(vfs_engine: Engine, images: Images, tmp_path, as_tar: bool) -> None:
    """Docker <= 24 writes a layer two images share once, the second as `layer.tar -> ../<id>/layer.tar`."""
    src = str(tmp_path / "legacy")
    with tarfile.open(images.archive("legacy.tar", [images.busybox, images.multi], "legacy")) as tf:
        tf.extractall(src, filter="data")
    manifest = json.load(open(f"{src}/manifest.json"))
    multi = next(entry for entry in manifest if entry["RepoTags"] == ["strata/multi:latest"])
    first = multi["Layers"][0].split("/")[0]
    other = "f" * 64
    os.mkdir(f"{src}/{other}")
    os.symlink(f"../{first}/layer.tar", f"{src}/{other}/layer.tar")
    multi["Layers"][0] = f"{other}/layer.tar"
    json.dump(manifest, open(f"{src}/manifest.json", "w"))
    path = src
    if as_tar:
        path = str(tmp_path / "legacy-symlinked.tar")
        with tarfile.open(path, "w") as tf:
            for name in sorted(os.listdir(src)):
                tf.add(f"{src}/{name}", name)
    status, _, err = run(vfs_engine, "load", path)
    assert status == 0, err
    assert vfs_engine.graph.get_image("strata/multi").id == images.multi.id


def test_a_multi_platform_oci_index_loads_this_machines_image(vfs_engine: Engine, images: Images, tmp_path) -> None:
    layout = testimages.write(str(tmp_path / "oci"), [images.busybox], "oci-dir", "gzip")
    index = json.load(open(f"{layout}/index.json"))
    [amd64] = index["manifests"]
    amd64["platform"] = {"architecture": _arch(), "os": "linux"}
    other = {"mediaType": amd64["mediaType"], "digest": "sha256:" + "0" * 64, "size": 10,
             "platform": {"architecture": "s390x" if _arch() != "s390x" else "arm64", "os": "linux"}}
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": [other, amd64]}).encode()
    digest = hashlib.sha256(nested).hexdigest()
    open(f"{layout}/blobs/sha256/{digest}", "wb").write(nested)
    index["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
                           "size": len(nested)}]
    json.dump(index, open(f"{layout}/index.json", "w"))
    status, out, err = run(vfs_engine, "load", layout)
    assert status == 0, err
    assert out == "Loaded image: busybox:latest\n"  # the name annotated on the chosen manifest
    assert vfs_engine.graph.get_image("busybox").id == images.busybox.id


def test_an_image_without_layers(vfs_engine: Engine, tmp_path) -> None:
    empty = testimages.from_layers(["scratch:empty"], [])
    path = testimages.write(str(tmp_path / "empty.tar"), [empty])
    assert run(vfs_engine, "load", path)[0] == 0
    image = vfs_engine.graph.get_image("scratch:empty")
    assert image.layers == [] and image.top_layer is None
    [doc] = json.loads(run(vfs_engine, "inspect", "scratch:empty")[1])
    assert doc["RootFS"]["Layers"] == [] and doc["Size"] == 0
    with open(tmp_path / "again.tar", "wb") as f:
        assert vfs_engine.job("save", "scratch:empty", stdout=f).run() == 0
    assert run(vfs_engine, "rmi", "scratch:empty")[0] == 0
    assert run(vfs_engine, "load", str(tmp_path / "again.tar"))[1] == "Loaded image: scratch:empty\n"


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


# -- a second implementation: skopeo (containers/image, what podman uses) ---------------------
# No dockerd here, so the docker-archive format is cross-checked with skopeo (apt, installed
# by the Makefile): it reads what `save` writes, verifying every digest, and writes
# docker-archive, OCI layout and OCI archive images that `load` must read.


def _skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_skopeo_reads_what_save_writes(vfs_engine: Engine, images: Images, tmp_path) -> None:
    assert run(vfs_engine, "load", images.multi_tar)[0] == 0
    saved = str(tmp_path / "saved.tar")
    with open(saved, "wb") as f:
        assert vfs_engine.job("save", "strata/multi", "busybox", stdout=f).run() == 0
    for tag, image in (("strata/multi:latest", images.multi), ("busybox:latest", images.busybox)):
        config = json.loads(_skopeo("inspect", "--config", f"docker-archive:{saved}:{tag}"))
        assert config["rootfs"]["diff_ids"] == image.diff_ids
        out = tmp_path / tag.replace("/", "_")
        _skopeo("copy", f"docker-archive:{saved}:{tag}", f"dir:{out}")  # reads and digests every blob
        assert sorted(p.name for p in out.iterdir() if len(p.name) == 64) == sorted(
            {d.split(":")[1] for d in image.diff_ids} | {image.id.split(":")[1]})


@pytest.mark.parametrize("dest", ["docker-archive", "oci", "oci-archive"])
def test_load_reads_what_skopeo_writes(vfs_engine: Engine, images: Images, tmp_path, dest: str) -> None:
    target = str(tmp_path / ("skopeo.tar" if dest.endswith("archive") else "skopeo-oci"))
    _skopeo("copy", f"docker-archive:{images.multi_tar}:strata/multi:latest", f"{dest}:{target}:strata/multi:latest")
    status, out, err = run(vfs_engine, "load", target)
    assert status == 0, err
    [image] = vfs_engine.graph.images()
    assert [la.diff_id for la in image.layers] == images.multi.diff_ids
    if dest == "docker-archive":  # the config travels unchanged: same image id, same tag
        assert (image.id, out) == (images.multi.id, "Loaded image: strata/multi:latest\n")
    path = vfs_engine.driver.get(image.top_layer)
    try:
        assert os.path.getsize(os.path.join(path, "bin/busybox")) == os.path.getsize("/bin/busybox")
        assert not os.path.lexists(os.path.join(path, "etc/motd"))
    finally:
        vfs_engine.driver.put(image.top_layer)


def test_only_docker_valid_parents_are_written(images: Images) -> None:
    chain = images.chain
    assert docker_valid_parent(chain[1].config_bytes, chain[0].config_bytes)  # one step
    assert not docker_valid_parent(chain[3].config_bytes, chain[0].config_bytes)  # three steps
    assert not docker_valid_parent(chain[0].config_bytes, chain[1].config_bytes)


# A real `docker save` (Docker 20.10.24, Debian's docker.io): `docker import` of a tiny rootfs,
# then `docker build` adding a COPY layer and an ENV step; gzip'd (docker load takes that too).
# Docker 20.10 writes the legacy layout and stores the shared layer once, as a symlink.
DOCKER_FIXTURE = os.path.join(os.path.dirname(__file__), "data", "docker-20.10-save.tar.gz")
FIXTURE_TWO = "sha256:32248a301a4f853792243e0a70c42735cd2e3cb0af45d521938b9615a74d1266"
FIXTURE_BASE = "sha256:b8bcd029f8818f3a5b371f64d2da320cb767c7e920271138a56184cd486bbe0b"


def test_an_archive_docker_saved_loads_and_saves_back(vfs_engine: Engine, tmp_path) -> None:
    status, out, err = run(vfs_engine, "load", DOCKER_FIXTURE)
    assert status == 0, err
    assert out == "Loaded image: strata-fixture/two:1\nLoaded image: strata-fixture/base:1\n"
    two = vfs_engine.graph.get_image("strata-fixture/two:1")
    assert two.id == FIXTURE_TWO and vfs_engine.graph.get_image("strata-fixture/base:1").id == FIXTURE_BASE
    assert two.config["docker_version"] == "20.10.24+dfsg1" and "STRATA_FIXTURE=1" in two.config["config"]["Env"]
    path = vfs_engine.driver.get(two.top_layer)
    try:
        assert open(os.path.join(path, "hello.txt")).read() == "hello from a layer docker imported\n"
        assert open(os.path.join(path, "data/added.txt")).read() == "added by docker build COPY\n"
        assert os.readlink(os.path.join(path, "bin/passwd-link")) == "/etc/passwd"
    finally:
        vfs_engine.driver.put(two.top_layer)
    saved = str(tmp_path / "again.tar")  # what docker load took back (checked by hand: same id)
    with open(saved, "wb") as f:
        assert vfs_engine.job("save", "strata-fixture/two:1", stdout=f).run() == 0
    with tarfile.open(DOCKER_FIXTURE) as original, tarfile.open(saved) as ours:
        [entry] = json.loads(_blob(ours, "manifest.json"))
        docker_layers = [_blob(original, name) for name in
                         next(e for e in json.loads(_blob(original, "manifest.json")) if e["RepoTags"] ==
                              ["strata-fixture/two:1"])["Layers"]]
        assert [_blob(ours, name) for name in entry["Layers"]] == docker_layers  # byte for byte

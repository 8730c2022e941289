"""push --estargz and save --estargz: eStargz layers that a lazy reader can use (annotations,
a TOC found with Range requests on the real registry) and that every ordinary client still
pulls as plain layers: strata's own pull, skopeo, and Debian's dockerd 20.10."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import tarfile

import pytest
import requests

from engine.engine import Engine
from engine.images import testimages
from graphdrivers.archive import estargz
from tests.engine.registry.test_pull_push import _engine_on, _run
from tests.support import dockerd
from tests.support.registry_server import RegistryServer
from tests.unit.archive_tools import snapshot, without_root_and_times_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EXTRA = (estargz.TOC_NAME, estargz.NO_PREFETCH_LANDMARK)


@pytest.fixture(scope="module")
def multi_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("esgz-images")
    base, multi = testimages.multilayer(str(work / "build"), small_files=50, big_size=9 << 20)
    return testimages.write(str(work / "images.tar"), [base, multi])


def _manifest(registry: RegistryServer, repo: str, tag: str) -> dict:
    resp = requests.get(f"http://{registry.host}/v2/{repo}/manifests/{tag}",
                        headers={"Accept": OCI_MANIFEST}, timeout=30)
    resp.raise_for_status()
    assert resp.headers["Content-Type"] == OCI_MANIFEST
    return resp.json()


def _blob(registry: RegistryServer, repo: str, digest: str, start: int | None = None, end: int | None = None) -> bytes:
    """A blob, or its bytes [start, end) through an HTTP Range request (answered 206)."""
    headers = {} if start is None else {"Range": f"bytes={start}-{end - 1}"}
    resp = requests.get(f"http://{registry.host}/v2/{repo}/blobs/{digest}", headers=headers, timeout=60)
    assert resp.status_code == (200 if start is None else 206), resp.text
    return resp.content


def _rootfs(engine: Engine, image_ref: str) -> dict[str, tuple]:
    """The image's full tree as the driver mounts its top layer, without the eStargz files."""
    top = engine.graph.get_image(image_ref).top_layer
    path = engine.driver.get(top)
    try:
        tree = without_root_and_times_of(snapshot(path))
    finally:
        engine.driver.put(top)
    return {k: v for k, v in tree.items() if k not in EXTRA}


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_push_estargz_is_lazy_readable_and_pulls_plainly(driver_name: str, make_backing, registry: RegistryServer,
                                                          multi_tar: str, tmp_path) -> None:
    src = _engine_on(make_backing, driver_name)
    repo = "esgz/multi"
    remote = f"{registry.host}/{repo}:v1"
    try:
        assert _run(src, "load", multi_tar)[0] == 0
        assert _run(src, "tag", "strata/multi:latest", remote)[0] == 0
        local = src.graph.get_image(remote)
        status, out, err = _run(src, "push", remote, estargz="1")
        assert status == 0, err
        assert out.count(": Pushed") == len(local.layers) == 4
        assert _run(src, "push", remote, estargz="1")[1].count("Layer already exists") == 4  # same blobs again
        want_tree = _rootfs(src, remote)
    finally:
        src.close()

    manifest = _manifest(registry, repo, "v1")
    assert manifest["mediaType"] == OCI_MANIFEST
    config = json.loads(_blob(registry, repo, manifest["config"]["digest"]))
    assert config["history"] == local.config["history"]
    tocs = []
    for desc, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        assert desc["mediaType"] == GZIP_LAYER
        blob = _blob(registry, repo, desc["digest"])
        plain = gzip.decompress(blob)
        assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
        assert desc["annotations"][estargz.UNCOMPRESSED_SIZE_ANNOTATION] == str(len(plain))
        toc, toc_digest = estargz.read_toc(lambda s, e, d=desc["digest"]: _blob(registry, repo, d, s, e), desc["size"])
        assert toc_digest == desc["annotations"][estargz.TOC_DIGEST_ANNOTATION]
        for entry in toc.entries:
            if entry.type == "reg" and entry.size and entry.path != estargz.NO_PREFETCH_LANDMARK:
                data = b"".join(estargz.decompress_chunk(blob[slice(*toc.span(c))], c) for c in toc.chunks(entry.name))
                assert "sha256:" + hashlib.sha256(data).hexdigest() == entry.digest
        tocs.append(toc)
    [big] = [toc for toc in tocs if toc.get("data/big.bin")]
    assert len(big.chunks("data/big.bin")) == 3  # 9 MB in 4 MB chunks

    # skopeo, an ordinary client, reads and copies the image (verifying every digest)
    inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{remote}"],
                             capture_output=True, text=True, timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Layers"] == [d["digest"] for d in manifest["layers"]]
    copy = subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{remote}",
                           f"dir:{tmp_path / 'copy'}"], capture_output=True, text=True, timeout=300)
    assert copy.returncode == 0, copy.stderr
    for desc in manifest["layers"]:
        assert os.path.getsize(tmp_path / "copy" / desc["digest"].split(":")[1]) == desc["size"]

    # strata's plain pull into another engine: the config's diff ids, the same tree
    dst = _engine_on(make_backing, driver_name)
    try:
        status, _, err = _run(dst, "pull", remote)
        assert status == 0, err
        image = dst.graph.get_image(remote)
        assert [la.diff_id for la in image.layers] == config["rootfs"]["diff_ids"]
        assert image.id == manifest["config"]["digest"]
        assert _rootfs(dst, remote) == want_tree
        status, out, err = _run(dst, "run", remote, "cat", "/etc/passwd", rm="1")
        assert status == 0 and out.startswith("root:"), err
    finally:
        dst.close()


def test_dockerd_pulls_estargz_as_plain_layers(make_backing, registry: RegistryServer, multi_tar: str,
                                               tmp_path) -> None:
    """Debian's dockerd 20.10 checks every layer's diff id against the config as it pulls."""
    src = _engine_on(make_backing, "vfs")
    remote = f"{registry.host}/esgz/dockerd:v1"
    try:
        _run(src, "load", multi_tar)
        _run(src, "tag", "strata/multi:latest", remote)
        status, _, err = _run(src, "push", remote, estargz="1")
        assert status == 0, err
    finally:
        src.close()
    config_digest = _manifest(registry, "esgz/dockerd", "v1")["config"]["digest"]
    with dockerd.PrivateDockerd(str(tmp_path / "dockerd"), storage_driver="vfs") as peer:
        peer.docker("pull", remote)
        inspect = json.loads(peer.docker("image", "inspect", remote).stdout)[0]
        assert inspect["Id"] == config_digest
        config = json.loads(_blob(registry, "esgz/dockerd", config_digest))
        assert inspect["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_save_estargz_then_load_round_trips(driver_name: str, make_backing, multi_tar: str, tmp_path) -> None:
    src = _engine_on(make_backing, driver_name)
    archive = str(tmp_path / "esgz.tar")
    try:
        _run(src, "load", multi_tar)
        with open(archive, "wb") as out:
            assert src.job("save", "strata/multi:latest", "busybox:latest", stdout=out,
                           options={"estargz": True}).run() == 0
        want_tree = _rootfs(src, "strata/multi:latest")
    finally:
        src.close()
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        manifests = {d["annotations"]["io.containerd.image.name"]: json.load(
            tar.extractfile("blobs/sha256/" + d["digest"].split(":")[1])) for d in index["manifests"]}
        saved = manifests["docker.io/strata/multi:latest"]
        base = manifests["docker.io/library/busybox:latest"]
        assert base["layers"] == saved["layers"][: len(base["layers"])]  # the shared layer, one blob
        for desc in saved["layers"]:
            assert desc["mediaType"] == GZIP_LAYER
            blob = tar.extractfile("blobs/sha256/" + desc["digest"].split(":")[1]).read()
            assert "sha256:" + hashlib.sha256(blob).hexdigest() == desc["digest"]
            _, toc_digest = estargz.read_toc(lambda s, e, b=blob: b[s:e], len(blob))
            assert toc_digest == desc["annotations"][estargz.TOC_DIGEST_ANNOTATION]
    dst = _engine_on(make_backing, driver_name)
    try:
        status, _, err = _run(dst, "load", archive)
        assert status == 0, err
        image = dst.graph.get_image("strata/multi:latest")
        assert image.id == saved["config"]["digest"]
        assert _rootfs(dst, "strata/multi:latest") == want_tree
        assert dst.graph.get_image("busybox:latest").id == base["config"]["digest"]
    finally:
        dst.close()

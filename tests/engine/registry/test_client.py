"""The distribution client against a real registry server on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest

from engine import reference
from engine.errors import DigestMismatch, RegistryError
from engine.registry.client import RegistryClient, _is_loopback
from engine.registry.protocol import MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, Credentials, Manifest
from tests.support.registry_server import RegistryServer


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory):
    with RegistryServer(str(tmp_path_factory.mktemp("registry-auth")), users={"alice": "s3cret"}) as server:
        yield server


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_image(client: RegistryClient, repo: str, tag: str, layer: bytes, **upload: object) -> Manifest:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    for blob in (config, layer):
        client.upload_blob(repo, _digest(blob), io.BytesIO(blob), len(blob), **upload)  # type: ignore[arg-type]
    body = json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer), "size": len(layer)}],
    }).encode()
    manifest = Manifest(MEDIA_OCI_MANIFEST, body, _digest(body))
    assert client.put_manifest(repo, tag, manifest) == manifest.digest
    return manifest


def test_reference_parsing() -> None:
    r = reference.parse("127.0.0.1:5000/team/app:v1")
    assert (r.registry, r.repository, r.tag) == ("127.0.0.1:5000", "team/app", "v1")
    assert reference.parse("busybox").repository == "library/busybox"
    assert reference.parse("localhost/x").registry == "localhost"
    pinned = reference.parse("localhost:5000/x@sha256:" + "a" * 64)
    assert pinned.ref == "sha256:" + "a" * 64 and pinned.tag is None
    for bad in ("team/UPPER", "x:bad tag", "x@sha256:short", "a//b"):
        with pytest.raises(reference.InvalidReference):
            reference.parse(bad)


def test_push_pull_round_trip_monolithic_and_chunked(registry: RegistryServer) -> None:
    client = RegistryClient(registry.host)
    client.ping()
    layer = os.urandom(3 * 1024 * 1024 + 17)
    manifest = _push_image(client, "strata/mono", "v1", layer)
    chunked_layer = os.urandom(2 * 1024 * 1024 + 5)
    _push_image(client, "strata/chunked", "v1", chunked_layer, chunk_size=1 << 20)

    fetched = client.get_manifest("strata/mono", "v1")
    assert fetched.digest == manifest.digest and fetched.media_type == MEDIA_OCI_MANIFEST
    out = io.BytesIO()
    assert client.fetch_blob("strata/chunked", _digest(chunked_layer), out) == len(chunked_layer)
    assert out.getvalue() == chunked_layer
    assert client.get_manifest("strata/mono", manifest.digest).body == manifest.body
    # A blob already present is not sent again; one in another repo is mounted across.
    assert client.upload_blob("strata/mono", _digest(layer), io.BytesIO(layer), len(layer)) == "exists"
    assert client.upload_blob("strata/other", _digest(layer), io.BytesIO(layer), len(layer),
                              mount_from="strata/mono") == "mounted"
    assert client.tags("strata/mono") == ["v1"]
    assert set(client.search("strata")) >= {"strata/mono", "strata/chunked", "strata/other"}
    assert client.search("nothing-like-this") == []


def test_index_resolves_platform_entry(registry: RegistryServer) -> None:
    client = RegistryClient(registry.host)
    amd64 = _push_image(client, "strata/multi", "amd64-only", b"layer-bytes")
    index = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [
        {"mediaType": MEDIA_OCI_MANIFEST, "digest": amd64.digest, "size": len(amd64.body),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    client.put_manifest("strata/multi", "latest", Manifest(MEDIA_OCI_INDEX, index, _digest(index)))
    assert client.get_manifest("strata/multi", "latest").digest == amd64.digest
    with pytest.raises(RegistryError, match="no manifest for linux/arm64"):
        client.get_manifest("strata/multi", "latest", platform=("linux", "arm64"))


def test_errors_are_typed(registry: RegistryServer) -> None:
    client = RegistryClient(registry.host)
    with pytest.raises(RegistryError, match="not found") as info:
        client.get_manifest("strata/missing", "v1")
    assert info.value.http_status == 404


def test_corrupted_blob_is_refused(registry: RegistryServer) -> None:
    """Corrupt the blob in the server's own storage: the client must notice on download."""
    client = RegistryClient(registry.host)
    layer = os.urandom(4096)
    _push_image(client, "strata/verify", "v1", layer)
    hexdigest = _digest(layer).split(":")[1]
    data = os.path.join(registry.directory, "storage", "docker", "registry", "v2", "blobs", "sha256",
                        hexdigest[:2], hexdigest, "data")
    with open(data, "r+b") as f:
        f.write(b"tampered")
    with pytest.raises(DigestMismatch, match="hashes to"):
        client.fetch_blob("strata/verify", _digest(layer), io.BytesIO())


def test_basic_auth(auth_registry: RegistryServer) -> None:
    anonymous = RegistryClient(auth_registry.host)
    with pytest.raises(RegistryError, match="requires a login"):
        anonymous.ping()
    wrong = RegistryClient(auth_registry.host, Credentials("alice", "wrong"))
    with pytest.raises(RegistryError) as info:
        wrong.ping()
    assert info.value.http_status == 401
    alice = RegistryClient(auth_registry.host, Credentials("alice", "s3cret"))
    alice.ping()
    _push_image(alice, "strata/private", "v1", b"secret layer")
    assert alice.tags("strata/private") == ["v1"]


def test_plain_http_only_for_loopback_or_insecure() -> None:
    assert _is_loopback("127.0.0.1:5000") and _is_loopback("localhost:5000") and _is_loopback("[::1]:5000")
    assert not _is_loopback("registry.example.com:5000") and not _is_loopback("10.0.0.1")

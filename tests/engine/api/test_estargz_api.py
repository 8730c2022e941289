"""strata's own `estargz` query parameter on the push and save routes, and the docker CLI
pulling and running the eStargz image through strata's daemon like any other."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.parse

import pytest
import requests

from graphdrivers.archive import estargz
from tests.engine.api.conftest import Daemon
from tests.engine.api.test_http_errors import _UnixHTTP
from tests.support.registry_server import RegistryServer


def _request(daemon: Daemon, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = _UnixHTTP(daemon.socket)
    conn.timeout = 120
    conn.request(method, path)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_docker_cli_pulls_and_runs_what_the_api_pushed_as_estargz(daemon: Daemon, busybox_tar: str,
                                                                  registry: RegistryServer) -> None:
    def ok(*args: str) -> str:
        done = daemon.docker(*args)
        assert done.returncode == 0, (args, done.stderr.decode())
        return done.stdout.decode()

    ok("load", "-i", busybox_tar)
    repo = "api/esgz-busybox"
    remote = f"{registry.host}/{repo}:v1"
    ok("tag", "busybox:latest", remote)
    status, body = _request(daemon, f"/v1.41/images/{registry.host}/{repo}/push?tag=v1&estargz=1", "POST")
    assert status == 200
    messages = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert not [m for m in messages if "error" in m], messages
    manifest = requests.get(f"http://{registry.host}/v2/{repo}/manifests/v1", timeout=30,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    assert all(estargz.TOC_DIGEST_ANNOTATION in d["annotations"] for d in manifest["layers"])

    ok("rmi", remote, "busybox:latest")
    ok("pull", remote)
    assert ok("image", "inspect", "--format", "{{.Id}}", remote).strip() == manifest["config"]["digest"]
    assert ok("run", "--rm", remote, "cat", "/etc/passwd").startswith("root:")

    names = urllib.parse.quote(remote)
    status, archive = _request(daemon, f"/v1.41/images/get?names={names}&estargz=1")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        [desc] = json.load(tar.extractfile("index.json"))["manifests"]
        saved = json.load(tar.extractfile("blobs/sha256/" + desc["digest"].split(":")[1]))
    assert [d["annotations"] for d in saved["layers"]] == [d["annotations"] for d in manifest["layers"]]
    status, body = _request(daemon, f"/v1.41/images/get?names={names}&estargz=maybe")
    assert status == 400 and b"estargz" in body

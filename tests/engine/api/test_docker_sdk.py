"""The same flow through the docker Python SDK."""

from __future__ import annotations

import docker
import pytest

from tests.engine.api.conftest import Daemon
from tests.support.registry_server import RegistryServer


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_docker_sdk_workflow(daemon: Daemon, busybox_tar: str, registry: RegistryServer) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        assert client.info()["Driver"] == "vfs"
        with open(busybox_tar, "rb") as f:
            [image] = client.images.load(f.read())
        assert "busybox:latest" in image.tags
        assert client.containers.run("busybox", ["echo", "sdk"], remove=True) == b"sdk\n"
        with pytest.raises(docker.errors.ContainerError) as info:
            client.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
        assert info.value.exit_status == 3

        c = client.containers.create("busybox", ["sh", "-c", "echo made > /made; echo done"], name="sdk1")
        c.start()
        assert c.wait()["StatusCode"] == 0
        assert c.logs() == b"done\n"
        assert {"Path": "/made", "Kind": 1} in c.diff()
        committed = c.commit("sdk-snap", "v1")
        c.remove()
        remote = f"{registry.host}/sdk/snap"
        committed.tag(remote, "v1")
        client.images.push(remote, "v1")
        client.images.remove(f"{remote}:v1")
        client.images.remove("sdk-snap:v1")
        pulled = client.images.pull(remote, "v1")
        assert pulled.id == committed.id
        assert client.containers.run(pulled.id, ["cat", "/made"], remove=True) == b"made\n"
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("nothing-here")
    finally:
        client.close()

"""What docker clients read from strata has Docker's shape: uploads of any size and
Content-Type, inspect fields the docker CLI reads, system df's figures."""

from __future__ import annotations

import io
import json
import tarfile

import docker
import pytest

from engine.images import testimages
from tests.engine.api.conftest import Daemon


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_sdk_loads_an_archive_over_the_json_limit(daemon: Daemon, tmp_path) -> None:
    """docker-py sends load's body with no Content-Type; a 5 MiB archive still streams in."""
    base, multi = testimages.multilayer(str(tmp_path / "build"), small_files=3, big_size=5 << 20)
    archive = testimages.write(str(tmp_path / "big.tar"), [base, multi])
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=120)
    try:
        with open(archive, "rb") as f:
            loaded = client.images.load(f.read())
        assert "strata/multi:latest" in [tag for image in loaded for tag in image.tags]
    finally:
        client.close()


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_load_of_a_deeply_nested_manifest_is_a_clean_error(daemon: Daemon) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"[" * 100_000 + b"]" * 100_000
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    done = daemon.docker("load", input=buf.getvalue())
    assert done.returncode == 1
    assert "manifest.json nests too deeply" in done.stderr.decode()
    assert "Traceback" not in daemon.docker("images").stderr.decode()


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_inspect_port_and_system_df(daemon: Daemon, busybox_tar: str) -> None:
    def ok(*args: str) -> str:
        done = daemon.docker(*args)
        assert done.returncode == 0, (args, done.stderr.decode())
        return done.stdout.decode()

    ok("load", "-i", busybox_tar)
    ok("create", "--name", "c1", "busybox", "sh", "-c", "head -c 300000 /dev/zero > /grown")
    ok("start", "c1")
    assert ok("wait", "c1").strip() == "0"
    assert ok("port", "c1") == ""  # the docker CLI panicked without NetworkSettings.Ports
    [doc] = json.loads(ok("inspect", "c1"))
    assert doc["NetworkSettings"]["Ports"] == {} and doc["Mounts"] == []

    df = json.loads(ok("system", "df", "--format", "{{json .}}").splitlines()[0])
    assert df["Type"] == "Images" and df["Active"] == "1"
    assert df["Reclaimable"].endswith("(0%)")  # the one image is in use
    verbose = ok("system", "df", "-v")
    assert " years ago " in verbose.split("Containers space usage")[0]  # the image's 2023 creation date
    assert "Exited (0)" in verbose and " 300kB " in verbose
    containers = json.loads(ok("system", "df", "--format", "{{json .}}").splitlines()[1])
    assert containers["Type"] == "Containers" and containers["Size"].endswith("kB")

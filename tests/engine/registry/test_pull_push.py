"""push -> pull -> run through a real registry on loopback, on every driver."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import graphdrivers
from engine.engine import Engine
from engine.images import testimages
from tests.support.registry_server import RegistryServer


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(str(tmp_path_factory.mktemp("registry-auth")), users={"bob": "hunter2"}) as server:
        yield server


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("pushimages")
    base, multi = testimages.multilayer(str(work / "build"), small_files=100, big_size=1 << 20)
    return testimages.write(str(work / "images.tar"), [base, multi])


def _run(engine: Engine, name: str, *args: str, **env: str) -> tuple[int, str, str]:
    job = engine.job(name, *args, env=env)
    status = job.run()
    return status, job.stdout.getvalue().decode(), job.stderr.getvalue().decode()


def _engine_on(make_backing, driver: str) -> Engine:
    fs = make_backing(graphdrivers.registration(driver).backing_fs)
    root = os.path.join(fs.mountpoint, "root")
    os.makedirs(root)
    return Engine(root, driver, {"exec.driver": "native"})


def test_push_pull_run(driver_name: str, make_backing, registry: RegistryServer, busybox_tar: str) -> None:
    src = _engine_on(make_backing, driver_name)
    try:
        assert _run(src, "load", busybox_tar)[0] == 0
        remote = f"{registry.host}/{driver_name}/multi:v1"
        assert _run(src, "tag", "strata/multi:latest", remote)[0] == 0
        layers = len(src.graph.get_image(remote).layers)
        status, out, err = _run(src, "push", remote)
        assert status == 0, err
        assert out.count(": Pushed") == layers == 4
        # Pushing again sends nothing; pushing to another repository mounts the blobs.
        assert _run(src, "push", remote)[1].count("Layer already exists") == layers
        other = f"{registry.host}/{driver_name}/copy:v1"
        _run(src, "tag", remote, other)
        assert _run(src, "push", other)[1].count("Mounted from another repository") == layers
        source_id = src.graph.get_image(remote).id
    finally:
        src.close()

    dst = _engine_on(make_backing, driver_name)
    try:
        status, out, err = _run(dst, "pull", remote)
        assert status == 0, err
        assert out.strip().splitlines()[-1] == source_id
        image = dst.graph.get_image(remote)
        assert image.id == source_id and len(image.layers) == layers
        status, out, err = _run(dst, "run", remote, "sh", "-c", "ls /bin/busybox && echo pulled-ok", rm="1")
        assert (status, out.strip().splitlines()[-1]) == (0, "pulled-ok"), err
        # A second pull finds every layer present.
        assert _run(dst, "pull", remote)[1].count("Already exists") == layers
    finally:
        dst.close()


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_pull_errors_leave_no_trace(driver_name: str, make_backing, registry: RegistryServer,
                                    busybox_tar: str) -> None:
    engine = _engine_on(make_backing, driver_name)
    try:
        status, _, err = _run(engine, "pull", f"{registry.host}/nothing/here:v1")
        assert status == 1 and "not found" in err
        status, _, err = _run(engine, "pull", "Bad Name")
        assert status == 1 and "invalid reference" in err
        # Corrupt a pushed layer in the registry's storage: the pull is refused, nothing stays.
        _run(engine, "load", busybox_tar)
        remote = f"{registry.host}/corrupt/busybox:v1"
        _run(engine, "tag", "busybox:latest", remote)
        assert _run(engine, "push", remote)[0] == 0
        digest = engine.graph.get_image(remote).layers[0].diff_id.split(":")[1]
    finally:
        engine.close()
    blob = os.path.join(registry.directory, "storage", "docker", "registry", "v2", "blobs", "sha256",
                        digest[:2], digest, "data")
    with open(blob, "r+b") as f:
        f.seek(os.path.getsize(blob) // 2)  # inside busybox's bytes: a valid tar, a wrong digest
        f.write(b"corrupted!")
    fresh = _engine_on(make_backing, driver_name)
    try:
        status, _, err = _run(fresh, "pull", remote)
        assert status == 1 and "does not match" in err
        assert fresh.graph.images() == [] and fresh.graph.layers() == []
        assert os.listdir(os.path.join(fresh.root, "vfs", "dir")) == []
    finally:
        fresh.close()


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_basic_auth_push_pull(driver_name: str, make_backing, auth_registry: RegistryServer,
                              busybox_tar: str) -> None:
    engine = _engine_on(make_backing, driver_name)
    try:
        _run(engine, "load", busybox_tar)
        remote = f"{auth_registry.host}/private/busybox:v1"
        _run(engine, "tag", "busybox:latest", remote)
        status, _, err = _run(engine, "push", remote)
        assert status == 1 and "requires a login" in err
        assert _run(engine, "push", remote, username="bob", password="hunter2")[0] == 0
        _run(engine, "rmi", remote)
        status, _, err = _run(engine, "pull", remote, username="bob", password="wrong")
        assert status == 1 and "401" in err
        assert _run(engine, "pull", remote, username="bob", password="hunter2")[0] == 0
        status, out, _ = _run(engine, "search", f"{auth_registry.host}/priv", username="bob", password="hunter2")
        assert status == 0 and f"{auth_registry.host}/private/busybox" in out
    finally:
        engine.close()

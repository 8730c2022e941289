"""The real docker CLI (client only) drives `strata daemon` through a whole workflow."""

from __future__ import annotations

import json

import pytest

from tests.engine.api.conftest import Daemon
from tests.support.registry_server import RegistryServer


@pytest.mark.parametrize("driver_name", ["vfs", "overlay2"])
def test_docker_cli_workflow(daemon: Daemon, busybox_tar: str, registry: RegistryServer) -> None:
    def ok(*args: str) -> str:
        done = daemon.docker(*args)
        assert done.returncode == 0, (args, done.stderr.decode())
        return done.stdout.decode()

    info = json.loads(ok("info", "--format", "{{json .}}"))
    assert info["Driver"] == daemon.driver and info["DriverStatus"]
    assert "Loaded image: busybox:latest" in ok("load", "-i", busybox_tar)
    assert "busybox" in ok("images")

    assert ok("run", "--rm", "busybox", "echo", "hi") == "hi\n"
    assert daemon.docker("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    failed = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo to-err >&2; exit 5")
    assert (failed.returncode, failed.stderr) == (5, b"to-err\n")

    ok("create", "--name", "c1", "busybox", "sh", "-c", "mkdir /data && echo x > /data/f && echo out")
    ok("start", "c1")
    assert ok("wait", "c1").strip() == "0"
    assert ok("logs", "c1") == "out\n"
    assert ok("diff", "c1").split("\n")[:2] == ["A /data", "A /data/f"]
    image_id = ok("commit", "c1", "snap:v1").strip()
    assert image_id.startswith("sha256:")
    assert ok("run", "--rm", "snap:v1", "cat", "/data/f") == "x\n"
    ok("rm", "c1")
    assert "c1" not in ok("ps", "-a")

    remote = f"{registry.host}/cli/{daemon.driver}-snap:v1"
    ok("tag", "snap:v1", remote)
    assert "digest: sha256:" in ok("push", remote)
    ok("rmi", remote, "snap:v1")
    assert "snap" not in ok("images")
    ok("pull", remote)
    assert ok("run", "--rm", remote, "cat", "/data/f") == "x\n"
    assert ok("ps", "-aq") == ""


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_errors_keep_the_daemon_serving(daemon: Daemon) -> None:
    missing = daemon.docker("inspect", "--type", "image", "nothing-here")
    assert missing.returncode == 1 and b"nothing-here" in missing.stderr
    bad = daemon.docker("rm", "not-a-container")
    assert bad.returncode == 1 and b"no such container" in bad.stderr.lower()
    assert daemon.docker("version").returncode == 0


@pytest.mark.parametrize("driver_name", ["overlay2"])
def test_socket_mode_and_clean_shutdown(daemon: Daemon, busybox_tar: str) -> None:
    """The socket is 0660 root-owned; SIGTERM stops running containers and releases mounts."""
    import os
    import stat

    from engine.engine import Engine
    from graphdrivers import mountutil

    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0
    assert daemon.docker("load", "-i", busybox_tar).returncode == 0
    started = daemon.docker("run", "-d", "--name", "sleeper", "busybox", "sleep", "300")
    assert started.returncode == 0, started.stderr.decode()
    assert mountutil.mounts_under(os.path.join(daemon.root, daemon.driver)) != []
    assert daemon.stop() == 0
    assert not os.path.exists(daemon.socket)
    assert mountutil.mounts_under(os.path.join(daemon.root, daemon.driver)) == []
    with Engine(daemon.root, daemon.driver) as engine:
        sleeper = engine.containers.get("sleeper")
        # sleep is PID 1 of its namespace and ignores SIGTERM, so the SIGKILL after the
        # shutdown timeout ends it, as `docker stop` would.
        assert sleeper.state.status == "exited" and sleeper.state.exit_code == 137


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_docker_io_names_list_in_their_familiar_form(daemon: Daemon, busybox_tar: str) -> None:
    """Names on docker.io are shown as Docker shows them, whether the docker CLI shortened
    them (it sends the familiar name) or a raw API call sent the full one."""
    from tests.engine.api.test_http_errors import _call

    assert daemon.docker("load", "-i", busybox_tar).returncode == 0
    assert daemon.docker("tag", "busybox", "docker.io/library/foo:1").returncode == 0
    status, _ = _call(daemon, "POST", "/images/busybox/tag?repo=docker.io/bar/baz&tag=2")
    assert status == 201
    status, _ = _call(daemon, "POST", "/images/busybox/tag?repo=index.docker.io/library/qux&tag=3")
    assert status == 201
    listed = daemon.docker("images", "--format", "{{.Repository}} {{.Tag}}").stdout.decode().split("\n")
    assert {"foo 1", "bar/baz 2", "qux 3", "busybox latest"} <= set(listed)
    status, body = _call(daemon, "GET", "/images/json")
    assert status == 200
    [tags] = [image["RepoTags"] for image in body]
    assert sorted(tags) == ["bar/baz:2", "busybox:latest", "foo:1", "qux:3"]
    status, found = _call(daemon, "GET", "/images/docker.io/library/foo:1/json")
    assert status == 200 and "foo:1" in found["RepoTags"]

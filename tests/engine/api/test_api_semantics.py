"""Docker's semantics at the API's edges: failed streams, clients that hang up, list options,
refused flags, waits and attaches across runs, limits and volumes of failed creates.

One daemon (vfs, native) for the module; the docker CLI, docker-py and raw sockets drive it.
"""

from __future__ import annotations

import glob
import io
import json
import os
import socket
import tarfile
import time
from collections.abc import Iterator

import docker
import pytest
import requests

from engine.api import unimplemented
from tests.engine.api.conftest import Daemon, loaded_daemon

HANGUP_DEADLINE = 60.0  # generous: the daemon notices within seconds; fail only if it never does


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, busybox_tar: str) -> Iterator[Daemon]:
    with loaded_daemon(str(tmp_path_factory.mktemp("semantics") / "root"), busybox_tar) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def sdk(d: Daemon) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=d.host, version="1.41")
    yield client
    client.close()


def ok(d: Daemon, *args: str) -> str:
    done = d.docker(*args)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout.decode()


def _open_request(d: Daemon, method: str, path: str, headers: str = "") -> tuple[socket.socket, bytes]:
    """A raw request on a new connection; returns the socket and the reply's head."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(d.socket)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        assert data, head
        head += data
    return sock, head


def _threads(d: Daemon) -> int:
    return len(os.listdir(f"/proc/{d.proc.pid}/task"))


def _settles_to(d: Daemon, baseline: int) -> None:
    """The daemon's thread count comes back to `baseline` (polled; fails only if it never does)."""
    deadline = time.monotonic() + HANGUP_DEADLINE
    while _threads(d) > baseline:
        assert time.monotonic() < deadline, f"{_threads(d)} daemon threads, {baseline} before the client came"
        time.sleep(0.1)


def test_a_save_that_fails_midway_is_no_success(d: Daemon, sdk: docker.DockerClient, tmp_path) -> None:
    """A layer whose files went missing: the tar stream ends unfinished, and the docker CLI
    and docker-py report an error instead of writing a truncated archive as a success."""
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        data = b"x" * (1 << 20)
        info = tarfile.TarInfo("big-marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert d.docker("import", "-", "broken:1", input=rootfs.getvalue()).returncode == 0
    (marker,) = glob.glob(os.path.join(d.root, "vfs", "dir", "*", "big-marker"))
    os.unlink(marker)

    done = d.docker("save", "-o", str(tmp_path / "out.tar"), "broken:1")
    assert done.returncode != 0, done.stdout
    with pytest.raises((requests.exceptions.RequestException, docker.errors.DockerException)):
        for _ in sdk.images.get("broken:1").save():
            pass
    assert ok(d, "version", "--format", "{{.Server.Os}}") == "linux\n"  # the daemon serves on
    ok(d, "rmi", "broken:1")


def test_clients_that_hang_up_are_let_go(d: Daemon) -> None:
    """wait and attach on a container that is never started, and events when none come:
    after the client closes its connection, the daemon's threads for it end."""
    cid = ok(d, "create", "busybox", "true").strip()
    baseline = _threads(d)
    for method, path, headers in (
            ("POST", f"/v1.41/containers/{cid}/wait?condition=next-exit", ""),
            ("POST", f"/v1.41/containers/{cid}/attach?stream=1&stdout=1&stderr=1",
             "Connection: Upgrade\r\nUpgrade: tcp\r\n"),
            ("GET", "/v1.41/events", "")):
        sock, head = _open_request(d, method, path, headers)
        assert head.split(b" ")[1] in (b"200", b"101"), head
        assert _threads(d) > baseline
        sock.close()
        _settles_to(d, baseline)
    # nothing of the abandoned attach holds the container: it runs and is waited for as usual
    assert ok(d, "start", "-a", cid) == ""
    assert ok(d, "wait", cid) == "0\n"
    ok(d, "rm", cid)


def test_ps_limit_and_size(d: Daemon, sdk: docker.DockerClient) -> None:
    """`docker ps -n N` / `-l`: the newest N (1), stopped ones too; `-s`: real sizes."""
    made = [ok(d, "create", "busybox", "true").strip() for _ in range(3)]
    writer = ok(d, "run", "-d", "busybox", "sh", "-c", "head -c 200000 /dev/zero > /f; sleep 1000").strip()
    try:
        newest_first = [writer, *reversed(made)]
        assert ok(d, "ps", "-n", "2", "-q", "--no-trunc").split() == newest_first[:2]
        assert ok(d, "ps", "-l", "-q", "--no-trunc").split() == newest_first[:1]
        assert ok(d, "ps", "-q", "--no-trunc").split() == [writer]
        ok(d, "exec", writer, "sh", "-c", "while [ $(stat -c %s /f) -lt 200000 ]; do sleep 0.1; done")
        listed = {c["Id"]: c for c in sdk.api.containers(all=True, size=True)}
        image_size = sdk.images.get("busybox").attrs["Size"]
        assert 200000 <= listed[writer]["SizeRw"] < 300000
        assert listed[writer]["SizeRootFs"] == listed[writer]["SizeRw"] + image_size
        assert listed[made[0]]["SizeRw"] == 0
        assert "SizeRw" not in sdk.api.containers(all=True)[0]
        size = ok(d, "ps", "-s", "--format", "{{.Size}}").strip()
        assert size.startswith("2") and "kB (virtual " in size, size
    finally:
        ok(d, "rm", "-f", writer, *made)


def test_flags_strata_lacks_are_refused_and_force_and_noprune_honoured(d: Daemon, sdk: docker.DockerClient) -> None:
    api = sdk.api
    filters = json.dumps({"is-official": ["true"]})
    reply = api._get(api._url("/images/search"), params={"term": "busybox", "filters": filters})
    assert reply.status_code == 400 and "is-official" in reply.json()["message"]
    done = d.docker("volume", "ls", "-f", "name=x")
    assert done.returncode != 0 and b"filters are not supported by strata: name" in done.stderr
    reply = api._get(api._url("/networks"), params={"filters": "[1]"})
    assert reply.status_code == 400 and "filters must be a JSON object" in reply.json()["message"]

    assert d.docker("volume", "rm", "no-such-volume").returncode != 0
    ok(d, "volume", "rm", "-f", "no-such-volume")
    ok(d, "volume", "create", "kept")
    user = ok(d, "create", "-v", "kept:/data", "busybox", "true").strip()
    assert b"in use" in d.docker("volume", "rm", "-f", "kept").stderr  # force forgives absence, not use
    ok(d, "rm", user)
    ok(d, "volume", "rm", "kept")

    cid = ok(d, "create", "--name", "linked", "busybox", "true").strip()
    done = d.docker("rm", "--link", "linked")
    assert done.returncode != 0 and b"link" in done.stderr
    ok(d, "rm", cid)

    # an untagged parent: with --no-prune it stays, without it it goes with its child
    for prune in (False, True):
        c = ok(d, "create", "busybox", "true").strip()
        parent = ok(d, "commit", c, "parent:1").strip()
        ok(d, "rm", c)
        c = ok(d, "create", "parent:1", "true").strip()
        child = ok(d, "commit", c, "child:1").strip()
        ok(d, "rm", c)
        ok(d, "rmi", "parent:1")  # untag only: child:1 needs it
        ok(d, "rmi", *(() if prune else ("--no-prune",)), "child:1")
        assert d.docker("image", "inspect", child).returncode != 0
        assert (d.docker("image", "inspect", parent).returncode == 0) is not prune
        if not prune:
            ok(d, "rmi", parent)


def test_restart_uses_the_stop_timeout(d: Daemon) -> None:
    """`docker restart` without -t: the container's --stop-timeout, as `docker stop` does."""
    cid = ok(d, "run", "-d", "--stop-timeout", "1", "busybox", "sleep", "1000").strip()
    try:
        ok(d, "restart", cid)
        with open(os.path.join(os.path.dirname(d.root), "daemon.log")) as f:
            log = f.read()
        assert f"stopping container {cid[:12]}: SIGTERM, then SIGKILL after 1s" in log
        assert "after 10s" not in log
    finally:
        ok(d, "rm", "-f", cid)


def test_a_second_run_is_waited_for_and_attached_afresh(d: Daemon) -> None:
    """`docker start -a` of a stopped container shows this run's output only; wait with
    condition=next-exit on a stopped container answers when the next run ends."""
    script = "echo run; test -f /ran && exit 3; touch /ran; exit 0"
    cid = ok(d, "create", "busybox", "sh", "-c", script).strip()
    try:
        assert ok(d, "start", "-a", cid) == "run\n"
        sock, head = _open_request(d, "POST", f"/v1.41/containers/{cid}/wait?condition=next-exit")
        assert b" 200 " in head
        done = d.docker("start", "-a", cid)
        assert (done.returncode, done.stdout) == (3, b"run\n")
        body = b""
        while not body.endswith(b"0\r\n\r\n"):
            data = sock.recv(4096)
            assert data, body
            body += data
        sock.close()
        assert json.loads(body.split(b"\r\n")[1])["StatusCode"] == 3
    finally:
        ok(d, "rm", "-f", cid)


def test_one_stats_reading_of_a_stopped_container(d: Daemon, sdk: docker.DockerClient) -> None:
    c = sdk.containers.run("busybox", ["true"], detach=True)
    try:
        c.wait()
        reading = c.stats(stream=False)
        assert (reading["id"], reading["name"]) == (c.id, "/" + c.name)
        assert reading["read"] == "0001-01-01T00:00:00Z" and reading["memory_stats"] == {}
    finally:
        c.remove()


def test_updated_limits_hold_from_the_start(d: Daemon) -> None:
    """Limits set by `docker update` are in place when the process begins, not after."""
    cid = ok(d, "create", "-m", "64m", "busybox", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").strip()
    try:
        ok(d, "update", "-m", "96m", "--memory-swap", "192m", cid)
        assert ok(d, "start", "-a", cid) == f"{96 << 20}\n"
    finally:
        ok(d, "rm", cid)


def test_a_create_that_fails_leaves_no_new_volume(d: Daemon) -> None:
    ok(d, "create", "--name", "taken", "busybox", "true")
    try:
        done = d.docker("create", "--name", "taken", "-v", "fresh-volume:/data", "busybox", "true")
        assert done.returncode != 0 and b"already in use" in done.stderr
        assert "fresh-volume" not in ok(d, "volume", "ls", "-q").split()
    finally:
        ok(d, "rm", "taken")


def test_unimplemented_lists_only_unrouted_endpoints(d: Daemon, sdk: docker.DockerClient) -> None:
    """Every endpoint the 501 table names answers 501: none of them is routed."""
    for method, pattern in unimplemented.DOCKER_ENDPOINTS:
        path = pattern.replace("{path}", "some/name").replace("{}", "x")
        reply = sdk.api.request(method, sdk.api._url(path), timeout=30)
        assert reply.status_code == 501, (method, path, reply.status_code)

"""The docker CLI and docker-py against `strata daemon`: -i/-t, exec, lifecycle, observation,
cp and events, on both execdrivers (exec, pause and stats differ between them)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import docker
import pytest

from tests.engine.api.conftest import Daemon, start_daemon
from tests.support import terminal

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done"
pytestmark = pytest.mark.parametrize("driver_name", ["vfs"])


def _ok(daemon: Daemon, *args: str, input: bytes | None = None) -> str:
    done = daemon.docker(*args, input=input)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout.decode()


def _counter(daemon: Daemon, name: str) -> int:
    pid = int(_ok(daemon, "inspect", "-f", "{{.State.Pid}}", name))
    for _ in range(200):
        try:
            with open(f"/proc/{pid}/root/tmp/counter") as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise AssertionError("the counter never started")


def _docker_env(daemon: Daemon) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_CONFIG": os.path.join(daemon.root, "..", "dockercfg")}


@pytest.mark.parametrize("execdriver_name", ["native", "oci"])
def test_docker_cli_interactive_exec_and_lifecycle(daemon: Daemon, busybox_tar: str, tmp_path) -> None:
    _ok(daemon, "load", "-i", busybox_tar)
    assert _ok(daemon, "run", "-i", "--rm", "busybox", "cat", input=b"hi\n") == "hi\n"
    session = terminal.spawn(["docker", "run", "-it", "--rm", "busybox", "sh"], _docker_env(daemon))
    assert terminal.shell_session(session) == 3

    _ok(daemon, "run", "-d", "--name", "w1", "busybox", "sh", "-c", COUNTER)
    failed = daemon.docker("exec", "w1", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (failed.returncode, failed.stdout, failed.stderr) == (7, b"out\n", b"err\n")
    assert _ok(daemon, "exec", "-e", "FOO=bar", "-u", "1000:1001", "-w", "/tmp", "w1",
               "sh", "-c", "echo $FOO; id -u; id -g; pwd") == "bar\n1000\n1001\n/tmp\n"
    assert _ok(daemon, "exec", "-i", "w1", "cat", input=b"piped\n") == "piped\n"
    assert daemon.docker("exec", "w1", "no-such-command").returncode in (126, 127)
    assert terminal.shell_session(terminal.spawn(["docker", "exec", "-it", "w1", "sh"], _docker_env(daemon))) == 3

    top = _ok(daemon, "top", "w1")
    assert top.startswith("UID") and "while :" in top
    stats = _ok(daemon, "stats", "--no-stream", "w1").splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and stats[1].split()[1] == "w1"
    assert stats[1].split()[-1] != "0"  # PIDS

    _counter(daemon, "w1")
    _ok(daemon, "pause", "w1")
    frozen = _counter(daemon, "w1")
    time.sleep(0.5)
    assert _counter(daemon, "w1") == frozen
    assert _ok(daemon, "inspect", "-f", "{{.State.Paused}}", "w1").strip() == "true"
    _ok(daemon, "unpause", "w1")
    for _ in range(100):
        if _counter(daemon, "w1") > frozen:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("not running again after unpause")

    since = str(time.time())
    _ok(daemon, "restart", "-t", "1", "w1")
    _ok(daemon, "rename", "w1", "w2")
    _ok(daemon, "update", "--memory", "64m", "--memory-swap", "128m", "w2")
    assert _ok(daemon, "inspect", "-f", "{{.HostConfig.Memory}} {{.State.Running}}", "w2").strip() == "67108864 true"

    local = tmp_path / "local.txt"
    local.write_text("from the host\n")
    _ok(daemon, "cp", str(local), "w2:/tmp/")
    assert _ok(daemon, "exec", "w2", "cat", "/tmp/local.txt") == "from the host\n"
    _ok(daemon, "cp", "w2:/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text().startswith("root:")

    events = _ok(daemon, "events", "--since", since, "--until", str(time.time() + 1), "--filter", "type=container")
    actions = [line.split()[2] for line in events.splitlines()]
    assert actions[:4] == ["die", "stop", "start", "restart"] and "rename" in actions and "update" in actions
    _ok(daemon, "rm", "-f", "w2")
    assert _ok(daemon, "ps", "-aq") == ""


def test_restart_policy_restarts_a_failing_container(daemon: Daemon, busybox_tar: str) -> None:
    _ok(daemon, "load", "-i", busybox_tar)
    _ok(daemon, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
    for _ in range(400):
        state = _ok(daemon, "inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky").split()
        if state == ["2", "exited"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"not restarted twice then left exited: {state}")
    assert _ok(daemon, "logs", "flaky") == "run\nrun\nrun\n"
    _ok(daemon, "run", "-d", "--name", "steady", "--restart", "always", "busybox", "sleep", "60")
    _ok(daemon, "stop", "-t", "0", "steady")  # a user's stop is never undone by the policy
    time.sleep(0.5)
    assert _ok(daemon, "inspect", "-f", "{{.State.Status}}", "steady").strip() == "exited"
    api = docker.APIClient(base_url=daemon.host, version="1.41")
    try:  # the docker CLI refuses --rm with --restart itself; the daemon does too
        with pytest.raises(docker.errors.APIError, match="restart policy"):
            api.create_container("busybox", ["true"], host_config=api.create_host_config(
                auto_remove=True, restart_policy={"Name": "always"}))
    finally:
        api.close()
    _ok(daemon, "rm", "flaky", "steady")

    # a daemon's shutdown stops containers, but not as a user does: they start with the next one
    _ok(daemon, "run", "-d", "--name", "keeper", "--restart", "unless-stopped", "busybox", "sleep", "60")
    assert daemon.stop() == 0
    daemon.proc = start_daemon(daemon.root, daemon.driver).proc  # the fixture stops this one
    for _ in range(200):
        if _ok(daemon, "inspect", "-f", "{{.State.Status}}", "keeper").strip() == "running":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the unless-stopped container was not started with the daemon")
    _ok(daemon, "rm", "-f", "keeper")


@pytest.mark.parametrize("execdriver_name", ["native", "oci"])
def test_docker_sdk_exec_lifecycle_archive_events(daemon: Daemon, busybox_tar: str) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        with open(busybox_tar, "rb") as f:
            client.images.load(f.read())
        since = int(time.time())
        c = client.containers.run("busybox", ["sleep", "60"], detach=True, name="sdk")
        result = c.exec_run(["sh", "-c", "echo $A; id -u; pwd; exit 4"], environment=["A=1"], user="1000",
                            workdir="/tmp")
        assert (result.exit_code, result.output) == (4, b"1\n1000\n/tmp\n")
        exec_id = client.api.exec_create(c.id, ["sh", "-c", "exit 9"])["Id"]
        client.api.exec_start(exec_id)
        assert client.api.exec_inspect(exec_id)["ExitCode"] == 9

        c.pause()
        c.reload()
        assert c.status == "paused"
        c.unpause()
        assert [row[-1] for row in c.top()["Processes"]] == ["sleep 60"]
        reading = c.stats(stream=False)
        assert reading["pids_stats"]["current"] == 1 and reading["memory_stats"]["usage"] > 0

        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as tar:
            info = tarfile.TarInfo("dir/file")
            info.size = 6
            tar.addfile(info, io.BytesIO(b"sdk-cp"))
        assert c.put_archive("/tmp", payload.getvalue())
        chunks, stat = c.get_archive("/tmp/dir")
        assert stat["name"] == "dir" and stat["mode"] & (1 << 31)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            assert tar.extractfile("dir/file").read() == b"sdk-cp"

        c.rename("sdk2")
        c.restart(timeout=1)
        c.reload()
        assert (c.name, c.status) == ("sdk2", "running")
        c.update(mem_limit="32m")
        assert client.containers.get("sdk2").attrs["HostConfig"]["Memory"] == 32 << 20
        c.remove(force=True)

        sock_container = client.api.create_container("busybox", ["cat"], stdin_open=True)  # StdinOnce too
        sock = client.api.attach_socket(sock_container["Id"], params={"stdin": 1, "stdout": 1, "stream": 1})
        client.api.start(sock_container["Id"])
        sock._sock.sendall(b"over the socket\n")
        sock._sock.shutdown(1)  # SHUT_WR: the end of stdin
        assert client.api.wait(sock_container["Id"])["StatusCode"] == 0
        assert client.api.logs(sock_container["Id"]) == b"over the socket\n"
        sock.close()
        client.api.remove_container(sock_container["Id"])

        seen = [json.loads(e) if isinstance(e, bytes) else e
                for e in client.events(since=since, until=int(time.time()) + 1, decode=True,
                                       filters={"event": ["pause", "unpause", "rename"]})]
        assert [e["Action"] for e in seen] == ["pause", "unpause", "rename"]
    finally:
        client.close()


def test_attach_detach_keys_leave_the_container_running(daemon: Daemon, busybox_tar: str) -> None:
    api = docker.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        with open(busybox_tar, "rb") as f:
            for _ in api.load_image(f.read()):
                pass
        cid = api.create_container("busybox", ["sh"], stdin_open=True, tty=True)["Id"]
        api.start(cid)
        sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-x,x"})
        raw = sock._sock
        raw.sendall(b"echo attached-$((40+2))\n")
        seen = b""
        while b"attached-42" not in seen:
            chunk = raw.recv(4096)
            assert chunk, f"the stream ended early: {seen!r}"
            seen += chunk
        raw.sendall(b"\x18x")  # ctrl-x, x: the attach ends, the shell does not see them
        while raw.recv(4096):
            pass
        sock.close()
        assert api.inspect_container(cid)["State"]["Running"] is True
        again = api.exec_create(cid, ["true"])["Id"]
        api.exec_start(again)
        assert api.exec_inspect(again)["ExitCode"] == 0
        api.remove_container(cid, force=True)
        other = api.create_container("busybox", ["true"], name="keys")["Id"]
        with pytest.raises(docker.errors.APIError, match="invalid detach keys"):
            api.attach_socket(other, params={"stdin": 1, "stream": 1, "detachKeys": "ctrl-long"})
        api.remove_container(other)
    finally:
        api.close()


@pytest.mark.parametrize(("execdriver_name", "exec_runtime"), [("oci", "crun")])
def test_crun_exec_with_a_tty(daemon: Daemon, busybox_tar: str) -> None:
    """The oci execdriver on crun: `docker exec -t` under a pty gets a terminal of the
    container's devpts, and exec's exit codes come back, with and without one; `-it`
    resizes reach the process (crun before 1.9 does not pass them on: strata sizes the
    process's own terminal too)."""
    _ok(daemon, "load", "-i", busybox_tar)
    api = docker.APIClient(base_url=daemon.host, version="1.41")
    try:
        assert dict(api.info()["ExecutionDriverStatus"])["Runtime"].startswith("crun")
    finally:
        api.close()
    _ok(daemon, "run", "-d", "--name", "c1", "busybox", "sleep", "60")
    env = _docker_env(daemon)
    term = terminal.spawn(["docker", "exec", "-t", "c1", "sh", "-c", "tty; exit 5"], env)
    assert term.wait() == 5  # (draining the output as it waits)
    term.close()
    assert b"/dev/pts/" in term.output
    assert terminal.shell_session(terminal.spawn(["docker", "exec", "-it", "c1", "sh"], env)) == 3
    plain = daemon.docker("exec", "c1", "sh", "-c", "tty; exit 7")
    assert (plain.returncode, plain.stdout) == (7, b"not a tty\n")
    _ok(daemon, "rm", "-f", "c1")
    # and the container's own terminal, sized and resized as exec's (crun 1.8 passes no resize on)
    assert terminal.shell_session(terminal.spawn(["docker", "run", "-it", "--rm", "busybox", "sh"], env)) == 3

"""Query parameters and bodies of Docker's API that strata used to read past: each is
honoured now (ps --last and --size, commit's pause and changes, rmi --no-prune, exec's
ConsoleSize) or refused by name, and a
refusal changes nothing."""

from __future__ import annotations

import json
import time

import docker
import pytest

from tests.engine.api.conftest import Daemon

pytestmark = pytest.mark.parametrize("driver_name", ["vfs"])


def _ok(daemon: Daemon, *args: str) -> str:
    done = daemon.docker(*args)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout.decode()


def _refused(daemon: Daemon, *args: str) -> str:
    done = daemon.docker(*args)
    assert done.returncode != 0, args
    return done.stderr.decode()


@pytest.mark.parametrize("execdriver_name", ["native", "oci"])  # exec's ConsoleSize on both
def test_docker_params_honoured_or_refused(daemon: Daemon, busybox_tar: str) -> None:
    _ok(daemon, "load", "-i", busybox_tar)
    _ok(daemon, "create", "--name", "first", "busybox", "true")
    _ok(daemon, "run", "-d", "--name", "second", "busybox", "sleep", "60")
    assert _ok(daemon, "ps", "-n", "1", "--format", "{{.Names}}").split() == ["second"]
    assert _ok(daemon, "ps", "-n", "2", "--format", "{{.Names}}").split() == ["second", "first"]
    assert "second" in _ok(daemon, "ps", "-s", "--format", "{{.Names}} {{.Size}}")
    assert "links" in _refused(daemon, "rm", "--link", "first")
    assert "first" in _ok(daemon, "ps", "-a", "--format", "{{.Names}}").split()  # not removed
    assert "filters" in _refused(daemon, "volume", "ls", "-f", "dangling=true")

    # commit pauses a running container while it reads its changes (docker commit's default)
    since = str(time.time())
    _ok(daemon, "exec", "second", "sh", "-c", "echo kept > /kept")
    _ok(daemon, "commit", "second", "committed:paused")
    _ok(daemon, "commit", "--pause=false", "second", "committed:unpaused")
    events = _ok(daemon, "events", "--since", since, "--until", str(time.time() + 1), "--filter", "container=second")
    assert [line.split()[2] for line in events.splitlines() if line.split()[2] in ("pause", "unpause")] == \
        ["pause", "unpause"]  # once: the --pause=false commit froze nothing
    assert _ok(daemon, "run", "--rm", "committed:unpaused", "cat", "/kept") == "kept\n"
    _ok(daemon, "commit", "-c", "CMD [\"cat\", \"/kept\"]", "second", "committed:changed")
    assert _ok(daemon, "run", "--rm", "committed:changed") == "kept\n"
    _ok(daemon, "rmi", "--no-prune", "committed:paused")

    api = docker.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        for method, path, params, name in (
                ("post", "/containers/second/stop", {"signal": "SIGKILL"}, "signal"),
                ("post", "/containers/second/restart", {"signal": "SIGKILL"}, "signal")):
            response = getattr(api, f"_{method}")(api._url(path), params=params, data=json.dumps({"Image": "busybox"}),
                                                   headers={"Content-Type": "application/json"})
            assert response.status_code == 400 and name in response.json()["message"], (path, response.text)
        assert api.inspect_container("second")["State"]["Running"] is True

        exec_id = api.exec_create("second", ["stty", "size"], tty=True)["Id"]
        response = api._post_json(api._url("/exec/{0}/start", exec_id), data={"Tty": True, "ConsoleSize": [33, 111]},
                                  stream=True)
        output = api._read_from_socket(response, stream=False, tty=True)
        assert output.strip() == b"33 111"
    finally:
        api.close()
    _ok(daemon, "rm", "-f", "first", "second")
    _ok(daemon, "rmi", "committed:changed", "committed:unpaused")

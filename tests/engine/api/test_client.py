"""`strata -H HOST run`: the thin client of a running daemon, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.engine.api.conftest import REPO, Daemon
from tests.support import terminal
from tests.support.registry_server import RegistryServer


def _strata(daemon: Daemon, *args: str, env_host: bool = False, input: bytes | None = None) \
        -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    host_args: tuple[str, ...] = ("-H", daemon.host)
    if env_host:
        env["STRATA_HOST"], host_args = daemon.host, ()
    return subprocess.run([sys.executable, "-m", "engine.cli", *host_args, *args], env=env, capture_output=True,
                          timeout=60, input=input)


@pytest.mark.parametrize("driver_name", ["overlay2"])
def test_run_through_the_daemon(daemon: Daemon, busybox_tar: str) -> None:
    assert daemon.docker("load", "-i", busybox_tar).returncode == 0
    done = _strata(daemon, "run", "--rm", "busybox", "echo", "hi")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hi\n", b"")
    done = _strata(daemon, "run", "--rm", "-e", "X=7", "-w", "/tmp", "busybox", "sh", "-c",
                   'echo "$X $(pwd)"; echo oops >&2; exit 3', env_host=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"7 /tmp\n", b"oops\n")
    done = _strata(daemon, "run", "--name", "kept", "busybox", "sh", "-c", "echo data > /f")
    assert done.returncode == 0
    assert daemon.docker("diff", "kept").stdout.decode().split() == ["A", "/f"]
    detached = _strata(daemon, "run", "-d", "busybox", "true")
    assert detached.returncode == 0 and len(detached.stdout.strip()) == 64
    assert daemon.docker("wait", detached.stdout.decode().strip()).stdout == b"0\n"
    piped = _strata(daemon, "run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo end", input=b"hi\n")
    assert (piped.returncode, piped.stdout) == (0, b"hi\nend\n")
    env = {**os.environ, "PYTHONPATH": REPO}
    session = terminal.spawn([sys.executable, "-m", "engine.cli", "-H", daemon.host, "run", "-it", "--rm", "busybox",
                              "sh"], env)
    assert terminal.shell_session(session) == 3
    # --rm left nothing; the named and the detached containers are there.
    names = daemon.docker("ps", "-a", "--format", "{{.Names}}").stdout.decode().split()
    assert "kept" in names and len(names) == 2


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_run_pulls_a_missing_image_through_the_daemon(daemon: Daemon, busybox_tar: str,
                                                      registry: RegistryServer) -> None:
    remote = f"{registry.host}/client/busybox:1"
    for args in (("load", "-i", busybox_tar), ("tag", "busybox", remote), ("push", remote), ("rmi", remote)):
        assert daemon.docker(*args).returncode == 0, args
    done = _strata(daemon, "run", "--rm", remote, "echo", "pulled")
    assert (done.returncode, done.stdout) == (0, b"pulled\n"), done.stderr
    assert f"Unable to find image '{remote}' locally".encode() in done.stderr
    again = _strata(daemon, "run", "--rm", "--pull", "always", remote, "true")
    assert again.returncode == 0 and b"Unable to find" not in again.stderr and b"Digest: sha256:" in again.stderr
    missing = _strata(daemon, "run", "--rm", f"{registry.host}/client/nothing:1", "true")
    assert missing.returncode == 125 and b"Unable to find image" in missing.stderr


@pytest.mark.parametrize("driver_name", ["vfs"])
def test_client_errors(daemon: Daemon) -> None:
    done = _strata(daemon, "run", "--rm", "--pull", "never", "no-such-image", "true")
    assert done.returncode == 125 and b"no such image" in done.stderr
    done = _strata(daemon, "run", "--name", "bad name", "busybox", "true")
    assert done.returncode == 125 and b"invalid container name" in done.stderr
    env = {**os.environ, "PYTHONPATH": REPO}
    gone = subprocess.run([sys.executable, "-m", "engine.cli", "-H", "unix:///nonexistent/strata.sock", "run",
                           "busybox", "true"], env=env, capture_output=True, timeout=60)
    assert gone.returncode == 125 and b"cannot reach the strata daemon" in gone.stderr
    other = subprocess.run([sys.executable, "-m", "engine.cli", "-H", daemon.host, "images"], env=env,
                           capture_output=True, timeout=60)
    assert other.returncode == 2 and b"-H/--host is for `run`" in other.stderr


def test_run_arguments_parse_as_the_cli_parses_them() -> None:
    """The client's parser and argparse (the engine's CLI) read the same table alike."""
    from engine.cli import app
    from engine.containers import args as containerargs

    for argv in (["busybox"], ["--rm", "-d", "busybox", "true"],
                 ["-e", "A=1", "-eB=2", "--env=C=3", "--name=x", "-w", "/t", "--net", "host", "img", "sh", "-c", "-e"],
                 ["-u", "1:2", "--hostname", "h", "--", "img", "--rm"],
                 ["-p", "127.0.0.1:80:80", "--publish=81", "-P", "--expose", "90", "--network", "mynet",
                  "--network-alias", "a", "--ip", "10.0.0.5", "img"],
                 ["-it", "--restart", "on-failure:3", "img", "sh"], ["-i", "-t", "--rm", "img"]):
        client = vars(containerargs.parse_run(argv))
        cli = vars(app.parser().parse_args(["run", *argv]))
        assert client == {key: cli[key] for key in client}, argv
    for bad, message in ((["--bogus", "img"], "unknown option"), (["--rm"], "needs an IMAGE"),
                         (["-P=1", "img"], "takes no value"), (["-e"], "needs a value")):
        with pytest.raises(containerargs.UsageError, match=message):
            containerargs.parse_run(bad)

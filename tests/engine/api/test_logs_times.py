"""`logs --since/--until/--timestamps` through strata's daemon, as Docker's json-file driver
gives them: every line has its stream and time; the docker CLI and docker-py against it,
for containers with and without a TTY."""

from __future__ import annotations

import re
import time

import docker
import pytest

from tests.engine.api.conftest import Daemon

pytestmark = pytest.mark.parametrize("driver_name", ["vfs"])
STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z (.*)$", re.S)
# lines apart in time (each its own read, so its own stamp), on both streams
LINES = "for i in 1 2 3 4; do echo out$i; echo err$i >&2; sleep 0.05; done"


def _ok(daemon: Daemon, *args: str) -> tuple[bytes, bytes]:
    done = daemon.docker(*args)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout, done.stderr


def _stamped(output: bytes) -> list[tuple[str, bytes]]:
    """(RFC 3339 time with nanoseconds, line) of `logs -t` output."""
    out = []
    for line in output.splitlines(keepends=True):
        found = STAMP.match(line)
        assert found, line
        out.append((f"{found.group(1).decode()}.{found.group(2).decode()}Z", found.group(3)))
    return out


@pytest.mark.parametrize("execdriver_name", ["native", "oci"])
def test_docker_logs_since_until_timestamps(daemon: Daemon, busybox_tar: str) -> None:
    _ok(daemon, "load", "-i", busybox_tar)
    _ok(daemon, "run", "--name", "lines", "busybox", "sh", "-c", LINES)
    out, err = _ok(daemon, "logs", "lines")
    assert (out, err) == (b"out1\nout2\nout3\nout4\n", b"err1\nerr2\nerr3\nerr4\n")
    out, err = _ok(daemon, "logs", "-t", "lines")
    stamped_out = _stamped(out)
    assert [line for _, line in _stamped(err)] == [b"err1\n", b"err2\n", b"err3\n", b"err4\n"]
    assert [line for _, line in stamped_out] == [b"out1\n", b"out2\n", b"out3\n", b"out4\n"]
    times = [t for t, _ in stamped_out]
    assert times == sorted(times) and len(set(times)) == 4

    # the docker CLI sends an RFC 3339 time as unix seconds with nanoseconds: both ends included
    out, err = _ok(daemon, "logs", "--since", times[1], "--until", times[2], "lines")
    # stdout's and stderr's lines reach the log through two pipes: err2 may be stamped just
    # before or after out2, err3 before or after out3
    assert out == b"out2\nout3\n" and err in (b"", b"err2\n", b"err3\n", b"err2\nerr3\n")
    out, _ = _ok(daemon, "logs", "--since", times[1], "--tail", "2", "-t", "lines")
    assert [line for _, line in _stamped(out)] in ([b"out4\n"], [])  # the last 2 records: out4 and err4
    out, err = _ok(daemon, "logs", "--tail", "2", "lines")
    assert (out, err) == (b"out4\n", b"err4\n")
    out, _ = _ok(daemon, "logs", "--since", "10m", "-t", "lines")  # relative: from ten minutes ago
    assert _stamped(out) == stamped_out
    time.sleep(2.1)  # the docker CLI sends now-1s in whole seconds: every line must be older than that
    assert _ok(daemon, "logs", "--since", "1s", "-t", "lines") == (b"", b"")
    refused = daemon.docker("logs", "--since", "yesterday", "lines")
    assert refused.returncode != 0

    # follow stops at until, while the container goes on
    _ok(daemon, "run", "-d", "--name", "ticker", "busybox", "sh", "-c", "while :; do echo tick; sleep 0.05; done")
    until = time.time() + 1
    out, _ = _ok(daemon, "logs", "-f", "-t", "--until", f"{until:.9f}", "ticker")
    ticks = _stamped(out)
    assert ticks and all(line == b"tick\n" for _, line in ticks)
    assert _ok(daemon, "inspect", "-f", "{{.State.Running}}", "ticker")[0] == b"true\n"
    _ok(daemon, "rm", "-f", "lines", "ticker")


def test_docker_py_logs_and_a_tty_container(daemon: Daemon, busybox_tar: str) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        with open(busybox_tar, "rb") as f:
            client.images.load(f.read())
        for tty in (False, True):
            c = client.containers.run("busybox", ["sh", "-c", LINES], detach=True, tty=tty)
            assert c.wait()["StatusCode"] == 0
            stamped = _stamped(c.logs(stdout=True, stderr=True, timestamps=True))
            end = b"\r\n" if tty else b"\n"  # a terminal ends lines so; its one stream is stdout
            assert sorted(line for _, line in stamped) == sorted(
                f"{s}{i}".encode() + end for s in ("out", "err") for i in range(1, 5))
            nanos = [_unix(t) for t, _ in stamped]
            between = (nanos[4] - 10_000_000) / 1e9  # after out2/err2, 10ms before out3 (they are 50ms apart)
            later = _stamped(c.logs(since=between, timestamps=True))
            assert later == stamped[4:]
            assert c.logs(until=between).count(end) == 4  # out1 err1 out2 err2
            assert c.logs(stdout=False, stderr=True) == (b"" if tty else b"err1\nerr2\nerr3\nerr4\n")
            c.remove()
    finally:
        client.close()


def _unix(rfc3339: str) -> int:
    from engine.containers import logfile

    return logfile.parse_rfc3339nano(rfc3339)

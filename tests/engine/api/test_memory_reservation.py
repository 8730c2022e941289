"""`--memory-reservation` at create and run, as at update: the container's memory cgroup gets
the soft limit (on both execdrivers), inspect shows it, and Docker's rules refuse the rest."""

from __future__ import annotations

import docker
import pytest

from tests.engine.api.conftest import Daemon

pytestmark = pytest.mark.parametrize("driver_name", ["vfs"])
MIB = 1 << 20


def _ok(daemon: Daemon, *args: str) -> str:
    done = daemon.docker(*args)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout.decode()


def _soft_limit(pid: int) -> int:
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f if line.split(":")[1] == "memory")
    with open(f"/sys/fs/cgroup/memory{path}/memory.soft_limit_in_bytes") as f:
        return int(f.read())


@pytest.mark.parametrize("execdriver_name", ["native", "oci"])
def test_memory_reservation_at_run_reaches_the_cgroup(daemon: Daemon, busybox_tar: str) -> None:
    _ok(daemon, "load", "-i", busybox_tar)
    _ok(daemon, "run", "-d", "--name", "soft", "--memory", "64m", "--memory-reservation", "32m", "busybox",
        "sleep", "60")
    pid, reservation = _ok(daemon, "inspect", "-f", "{{.State.Pid}} {{.HostConfig.MemoryReservation}}",
                           "soft").split()
    assert int(reservation) == 32 * MIB and _soft_limit(int(pid)) == 32 * MIB
    _ok(daemon, "update", "--memory-reservation", "48m", "soft")
    assert _soft_limit(int(pid)) == 48 * MIB
    refused = daemon.docker("update", "--memory-reservation", "128m", "soft")  # above its 64m limit
    assert refused.returncode != 0 and b"Minimum memory limit can not be less than memory reservation" in \
        refused.stderr
    _ok(daemon, "rm", "-f", "soft")

    refused = daemon.docker("run", "--rm", "--memory", "32m", "--memory-reservation", "64m", "busybox", "true")
    assert refused.returncode != 0
    assert b"Minimum memory limit can not be less than memory reservation limit, see usage" in refused.stderr
    refused = daemon.docker("create", "--memory-reservation", "1m", "busybox", "true")
    assert refused.returncode != 0 and b"Minimum memory reservation allowed is 6MB" in refused.stderr

    client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        c = client.containers.run("busybox", ["sleep", "60"], detach=True, mem_reservation="16m")
        assert c.attrs["HostConfig"]["MemoryReservation"] == 16 * MIB
        c.reload()
        assert _soft_limit(c.attrs["State"]["Pid"]) == 16 * MIB
        c.remove(force=True)
    finally:
        client.close()
    assert _ok(daemon, "ps", "-aq") == ""

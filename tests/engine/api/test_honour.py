"""Every create option is honoured (its effect seen inside the container) or refused by name.

One daemon per execdriver (native; oci with runc) on a vfs root; the real docker CLI and
docker-py drive it. Several options share one container run to keep the suite fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import docker
import pytest

from tests.engine.api.conftest import Daemon, loaded_daemon

EXECDRIVERS = {"native": "native", "oci-runc": "oci"}


@pytest.fixture(scope="module", params=sorted(EXECDRIVERS))
def honour_daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  busybox_tar: str) -> Iterator[Daemon]:
    with loaded_daemon(str(tmp_path_factory.mktemp("honour") / "root"), busybox_tar,
                       exec_driver=EXECDRIVERS[request.param]) as d:
        yield d


def ok(d: Daemon, *args: str) -> str:
    done = d.docker(*args)
    assert done.returncode == 0, (args, done.stderr.decode())
    return done.stdout.decode()


def refused(d: Daemon, *args: str) -> str:
    """`docker run ARGS busybox true` refused: Docker's status 125 and the daemon's message."""
    done = d.docker("run", *args, "busybox", "true")
    assert done.returncode == 125, (args, done.stdout, done.stderr)
    return done.stderr.decode()


def test_hardening_options(honour_daemon: Daemon, tmp_path) -> None:
    """--read-only, --cap-drop ALL, --cap-add, no-new-privileges, -u, --group-add, --tmpfs, -v (ro)."""
    host = tmp_path / "shared"
    host.mkdir()
    (host / "from-host").write_text("hello\n")
    script = ("touch /x 2>/dev/null && echo rootfs-writable; grep CapEff /proc/self/status; "
              "grep NoNewPrivs /proc/self/status; echo t > /t/f && echo tmpfs-ok; grep ' /t ' /proc/mounts; "
              "cat /host/from-host; touch /host/y 2>/dev/null || echo bind-ro")
    out = ok(honour_daemon, "run", "--rm", "--read-only", "--cap-drop", "ALL", "--cap-add", "CHOWN",
             "--security-opt", "no-new-privileges", "--tmpfs", "/t:size=1m", "-v", f"{host}:/host:ro",
             "busybox", "sh", "-c", script)
    lines = out.splitlines()
    assert "rootfs-writable" not in out
    assert lines[0].split() == ["CapEff:", "0000000000000001"]  # CAP_CHOWN only
    assert lines[1].split() == ["NoNewPrivs:", "1"]
    assert lines[2] == "tmpfs-ok"
    assert "size=1024k" in lines[3] and "noexec" in lines[3]
    assert lines[4:] == ["hello", "bind-ro"]
    assert not (host / "y").exists()

    out = ok(honour_daemon, "run", "--rm", "-u", "nobody", "--group-add", "root", "--group-add", "50",
             "--cap-drop", "ALL", "busybox", "sh", "-c", "id; grep CapEff /proc/self/status")
    assert out.splitlines()[0].startswith("uid=65534(nobody) gid=65534(nogroup) groups=")
    assert out.splitlines()[0].endswith("groups=0(root),50")
    assert out.splitlines()[1].split() == ["CapEff:", "0000000000000000"]


def test_a_setup_failure_ends_the_run(honour_daemon: Daemon) -> None:
    done = honour_daemon.docker("run", "--rm", "--group-add", "nosuchgroup", "busybox", "true")
    assert done.returncode != 0 and b"nosuchgroup" in done.stderr
    assert ok(honour_daemon, "ps", "-aq") == ""


def test_privileged_gets_every_capability_and_host_devices(honour_daemon: Daemon) -> None:
    out = ok(honour_daemon, "run", "--rm", "--privileged", "--device", "/dev/null:/dev/mynull", "busybox", "sh",
             "-c", "grep CapEff /proc/self/status; ls /dev/loop-control; cat /proc/sys/kernel/ostype")
    with open("/proc/self/status") as f:  # every capability the engine holds (this test runs as it)
        held = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    assert out.split()[1] == held
    assert "/dev/loop-control" in out
    out = ok(honour_daemon, "run", "--rm", "--device", "/dev/null:/dev/mynull:rw", "busybox", "sh", "-c",
             "echo x > /dev/mynull && echo written; ls /dev/loop-control 2>&1 || true")
    assert out.splitlines()[0] == "written" and "No such file" in out


def test_limits(honour_daemon: Daemon) -> None:
    """--memory/--memory-swap, --cpus, --cpu-shares, --cpuset-cpus, --pids-limit, --ulimit,
    --sysctl, seen from inside through the container's cgroup and /proc."""
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes "
              "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares "
              "/sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/pids/pids.max; ulimit -n; ulimit -Hn; ulimit -u; "
              "cat /proc/sys/kernel/msgmax /proc/sys/net/ipv4/ip_forward")
    out = ok(honour_daemon, "run", "--rm", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5",
             "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "50", "--ulimit", "nofile=512:1024",
             "--ulimit", "nproc=99", "--sysctl", "kernel.msgmax=12345", "--sysctl", "net.ipv4.ip_forward=1",
             "busybox", "sh", "-c", script)
    assert out.split() == [str(64 << 20), str(128 << 20), "50000", "100000", "512", "0", "50", "512", "1024", "99",
                           "12345", "1"]


def test_oom_kill_disable_without_memory_warns(honour_daemon: Daemon) -> None:
    done = honour_daemon.docker("run", "--rm", "--oom-kill-disable", "-m", "32m", "busybox", "cat",
                                "/sys/fs/cgroup/memory/memory.oom_control")
    assert done.returncode == 0, done.stderr
    assert "oom_kill_disable 1" in done.stdout.decode()
    done = honour_daemon.docker("create", "--name", "warned", "--oom-kill-disable", "busybox", "true")
    assert done.returncode == 0, done.stderr
    assert b"WARNING: OOM killer is disabled for the container, but no memory limit is set" in done.stderr
    ok(honour_daemon, "rm", "warned")


def test_identity_files_labels_stop_and_init(honour_daemon: Daemon) -> None:
    out = ok(honour_daemon, "run", "--rm", "--hostname", "box", "--domainname", "example.org",
             "--add-host", "db:10.1.2.3", "--dns", "192.0.2.53", "--dns-search", "corp.example",
             "--dns-option", "ndots:2", "--init", "busybox", "sh", "-c",
             "hostname; cat /proc/sys/kernel/domainname; cat /etc/hosts /etc/resolv.conf /etc/hostname; "
             "tr '\\0' ' ' < /proc/1/cmdline")
    lines = out.splitlines()
    assert lines[:2] == ["box", "example.org"]
    assert "10.1.2.3\tdb" in lines and "127.0.1.1\tbox.example.org box" in lines
    assert "nameserver 192.0.2.53" in lines and "search corp.example" in lines and "options ndots:2" in lines
    assert lines[-2] == "box"
    assert lines[-1].startswith("/sbin/docker-init -- sh -c")

    ok(honour_daemon, "run", "-d", "--name", "stopper", "--label", "team=storage", "--stop-signal", "USR1",
       "--stop-timeout", "30", "busybox", "sh", "-c", "trap 'echo got-usr1; exit 7' USR1; while :; do sleep 0.1; done")
    inspected = json.loads(ok(honour_daemon, "inspect", "stopper"))[0]
    assert inspected["Config"]["Labels"] == {"team": "storage"}
    assert inspected["Config"]["StopSignal"] == "SIGUSR1" and inspected["Config"]["StopTimeout"] == 30
    ok(honour_daemon, "stop", "stopper")
    assert ok(honour_daemon, "wait", "stopper").strip() == "7"
    assert ok(honour_daemon, "logs", "stopper") == "got-usr1\n"
    ok(honour_daemon, "rm", "stopper")


def test_named_volumes(honour_daemon: Daemon) -> None:
    assert ok(honour_daemon, "volume", "create", "--label", "k=v", "data").strip() == "data"
    ok(honour_daemon, "run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    ok(honour_daemon, "run", "--name", "reader", "--mount", "type=volume,source=data,target=/d,readonly",
       "busybox", "sh", "-c", "cat /d/f; touch /d/g 2>/dev/null || echo ro")
    assert ok(honour_daemon, "logs", "reader") == "kept\nro\n"
    inspected = json.loads(ok(honour_daemon, "volume", "inspect", "data"))[0]
    assert inspected["Labels"] == {"k": "v"} and inspected["Driver"] == "local"
    assert inspected["Mountpoint"].startswith(honour_daemon.root)
    assert "data" in ok(honour_daemon, "volume", "ls", "-q").split()
    busy = honour_daemon.docker("volume", "rm", "data")
    assert busy.returncode == 1 and b"in use" in busy.stderr
    ok(honour_daemon, "rm", "reader")
    ok(honour_daemon, "volume", "rm", "data")
    assert not os.path.exists(inspected["Mountpoint"])
    missing = honour_daemon.docker("volume", "inspect", "data")
    assert missing.returncode == 1 and b"no such volume" in missing.stderr.lower()


@pytest.mark.parametrize(("args", "field"), [
    (["-p", "8080:80"], "published ports (-p, -P) need a bridge network"),  # the daemon runs with --bridge none
    (["--pid", "host"], "PidMode"),
    (["--ipc", "host"], "IpcMode"),
    (["--uts", "host"], "UTSMode"),
    (["--network", "bridge"], "NetworkMode"),  # --bridge none: no default bridge, as with dockerd -b none
    (["--network", "container:other"], "container:NAME is not supported"),
    (["--restart", "always", "--rm"], "restart"),  # restart policies are honoured, but not with --rm
    (["-v", "/anonymous"], "Volumes"),
    (["--shm-size", "1g"], "ShmSize"),
    (["--memory", "8m", "--memory-reservation", "10m"], "can not be less than memory reservation"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "Sysctls"),
    (["--security-opt", "apparmor=custom"], "security-opt"),
    (["--cap-add", "NOT_A_CAP"], "CapAdd"),
    (["--memory", "1m"], "Memory"),
])
def test_unsupported_options_are_refused_by_name(honour_daemon: Daemon, args: list[str], field: str) -> None:
    message = refused(honour_daemon, *args)
    assert field in message, message
    assert ok(honour_daemon, "ps", "-aq") == ""  # nothing was created


def test_sdk_create_fields(honour_daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=honour_daemon.host)
    try:
        out = client.containers.run("busybox", ["sh", "-c", "touch /x 2>&1; grep CapEff /proc/self/status"],
                                    read_only=True, cap_drop=["ALL"], remove=True, mem_limit="32m",
                                    labels={"a": "b"}, tmpfs={"/scratch": "size=2m"})
        assert b"Read-only file system" in out and b"0000000000000000" in out
        with pytest.raises(docker.errors.APIError) as refused_:
            client.containers.create("busybox", "true", ports={"80/tcp": 8080})
        assert refused_.value.status_code == 400 and "published ports" in str(refused_.value)
        tty = client.api.create_container("busybox", "true", tty=True, stdin_open=True)  # honoured now
        config = client.api.inspect_container(tty["Id"])["Config"]
        assert (config["Tty"], config["OpenStdin"]) == (True, True)
        client.api.remove_container(tty["Id"])
        volume = client.volumes.create("sdkvol", labels={"x": "y"})
        assert volume.attrs["Labels"] == {"x": "y"}
        assert [v.name for v in client.volumes.list()] == ["sdkvol"]
        volume.remove()
    finally:
        client.close()


def test_console_size_sizes_the_terminal_at_start(honour_daemon: Daemon) -> None:
    """HostConfig.ConsoleSize is the TTY's size from the first instruction; without Tty it is refused."""
    client = docker.APIClient(base_url=honour_daemon.host)
    try:
        created = client.create_container("busybox", ["stty", "size"], tty=True,
                                          host_config={"ConsoleSize": [31, 101]})
        client.start(created["Id"])
        assert client.wait(created["Id"])["StatusCode"] == 0
        assert client.logs(created["Id"]).split() == [b"31", b"101"]
        client.remove_container(created["Id"])
        with pytest.raises(docker.errors.APIError) as refused_:
            client.create_container("busybox", "true", host_config={"ConsoleSize": [31, 101]})
        assert refused_.value.status_code == 400 and "ConsoleSize" in str(refused_.value)
    finally:
        client.close()

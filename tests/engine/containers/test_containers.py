"""Containers end to end: real layers on every registered graphdriver, real processes under
both execdrivers (native namespaces + pivot_root; runc), the `strata` command line."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import threading
import time

import pytest

import graphdrivers
from engine.engine import Engine
from engine.errors import Conflict, NoSuchContainer, NoSuchImage, NoSuchNetwork, UsageError
from engine.execdrivers.base import process_alive
from graphdrivers import mountutil
from graphdrivers.changes import Change

from .conftest import heavy_drivers, job, make_engine, strata, strata_popen

WRITER = "echo new > /tmp/new; mkdir -p /data/sub; echo b > /data/sub/f; rm /etc/motd; chmod 600 /etc/group"
WRITER_CHANGES = [
    Change("/data", "A"),
    Change("/data/sub", "A"),
    Change("/data/sub/f", "A"),
    Change("/etc", "C"),
    Change("/etc/group", "C"),
    Change("/etc/motd", "D"),
    Change("/tmp", "C"),
    Change("/tmp/new", "A"),
]




def _tar_names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/") for m in tar.getmembers()}


# -- the key flows: every graphdriver x both execdrivers ------------------------------------


def test_cli_run_rm_prints_hello(driver_name, driver_root, exec_name, busybox_tar):
    make_engine(driver_root, driver_name, exec_name, busybox_tar).close()
    ran = strata(driver_root, driver_name, exec_name, "run", "--rm", "busybox", "echo", "hello")
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, b"hello\n", b"")
    listed = strata(driver_root, driver_name, exec_name, "ps", "-a", "-q")
    assert listed.stdout == b""  # --rm removed it
    with Engine(driver_root, driver_name) as e:
        assert e.driver.status() is not None
        assert e.containers.ids() == []


def test_diff_commit_run_export(engine: Engine):
    status, out, _ = job(engine, "run", "busybox", "sh", "-c", WRITER, name="writer")
    assert status == 0, out
    c = engine.containers.get("writer")
    assert engine.containers.changes(c) == WRITER_CHANGES
    status, out, _ = job(engine, "diff", "writer")
    assert out.decode().splitlines() == [str(ch) for ch in WRITER_CHANGES]

    status, out, err = job(engine, "commit", "writer", "committed:v1", message="made by a test")
    assert status == 0, err
    image = engine.graph.get_image("committed:v1")
    base = engine.graph.get_image("busybox")
    assert image.id == out.decode().strip()
    assert [la.chain_id for la in image.layers[:-1]] == [la.chain_id for la in base.layers]
    assert image.config["config"]["Cmd"] == ["sh", "-c", WRITER]
    assert image.config["history"][-1]["comment"] == "made by a test"
    assert engine.driver.changes(image.top_layer, base.top_layer) == WRITER_CHANGES  # exactly those

    status, out, err = job(engine, "run", "committed:v1", "sh", "-c", "cat /data/sub/f /tmp/new; ls /etc", rm="1")
    assert status == 0, err
    assert out.decode().split() == ["b", "new", "group", "hostname", "hosts", "passwd", "resolv.conf"]

    status, tar_bytes, _ = job(engine, "export", "writer")
    names = _tar_names(tar_bytes)
    assert {"bin/busybox", "bin/sh", "data/sub/f", "tmp/new", "etc/passwd", "proc", "dev", "sys"} <= names
    assert "etc/motd" not in names
    path = engine.driver.get(c.layer)
    try:
        on_disk = {os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path) for n in ds + fs}
    finally:
        engine.driver.put(c.layer)
    assert names == on_disk  # the full rootfs, nothing more

    assert job(engine, "rm", "writer")[0] == 0
    assert not engine.driver.exists(c.layer)


# -- container semantics (vfs in a temp dir, both execdrivers) -------------------------------


def test_exit_codes_and_signals(vfs_engine: Engine):
    assert job(vfs_engine, "run", "busybox", "sh", "-c", "exit 7", rm="1")[0] == 7
    store = vfs_engine.containers
    status, out, _ = job(vfs_engine, "run", "busybox", "sleep", "60", detach="1", name="sleeper")
    assert status == 0 and len(out.strip()) == 64
    assert store.get("sleeper").state.running
    assert job(vfs_engine, "kill", "sleeper")[0] == 0
    assert job(vfs_engine, "wait", "sleeper")[1] == b"137\n"
    c = store.get("sleeper")
    assert (c.state.status, c.state.exit_code) == ("exited", 137)

    # stop: pid 1 ignores SIGTERM without a handler, so SIGKILL follows after the timeout
    job(vfs_engine, "start", "sleeper")
    assert job(vfs_engine, "stop", "sleeper", time="0.3")[0] == 0
    assert store.get("sleeper").state.exit_code == 137
    # ... and a process that handles SIGTERM ends by itself
    script = "trap 'exit 143' TERM; while :; do sleep 0.05; done"
    job(vfs_engine, "run", "busybox", "sh", "-c", script, detach="1", name="polite")
    time.sleep(0.3)  # let sh install its trap
    assert job(vfs_engine, "stop", "polite", time="30")[0] == 0
    assert store.get("polite").state.exit_code == 143


def test_missing_command_is_127_and_leaves_a_record(vfs_engine: Engine):
    status, _, err = job(vfs_engine, "run", "busybox", "no-such-cmd", name="bad")
    assert status == 127
    assert b"no-such-cmd" in err
    c = vfs_engine.containers.get("bad")
    assert (c.state.status, c.state.exit_code) == ("exited", 127)
    assert "no-such-cmd" in c.state.error  # inspect shows why


def test_100mb_output_is_kept_whole(vfs_engine: Engine, tmp_path):
    size = 100 << 20
    with open(tmp_path / "out", "wb") as out:
        j = vfs_engine.job("run", "busybox", "sh", "-c", f"head -c {size} /dev/zero; echo done >&2", stdout=out)
        assert j.run() == 0
    assert os.path.getsize(tmp_path / "out") == size
    assert j.stderr.getvalue() == b"done\n"


def test_env_workdir_user_hostname_network(vfs_engine: Engine):
    script = "echo $FOO; pwd; id -u; hostname; ls /sys/class/net"
    status, out, err = job(vfs_engine, "run", "busybox", "sh", "-c", script, env=json.dumps(["FOO=bar"]),
                           workdir="/tmp/w", user="nobody", hostname="h1", rm="1")  # fmt: skip
    assert status == 0, err
    assert out.decode().split() == ["bar", "/tmp/w", "65534", "h1", "lo"]
    status, out, _ = job(vfs_engine, "run", "busybox", "ls", "/sys/class/net", network="host", rm="1")
    assert sorted(out.split()) == sorted(n.encode() for n in os.listdir("/sys/class/net"))


def test_ps_inspect_names_and_refusals(vfs_engine: Engine):
    store = vfs_engine.containers
    job(vfs_engine, "create", "busybox", "sleep", "60", name="web")
    c = store.get("web")
    assert store.get(c.id[:10]).id == c.id and store.get("/web").id == c.id
    _, out, _ = job(vfs_engine, "ps")
    assert "web" not in out.decode()  # not running
    assert "web" in job(vfs_engine, "ps", all="1")[1].decode()
    job(vfs_engine, "start", "web")
    data = json.loads(job(vfs_engine, "container_inspect", "web")[1])[0]
    assert data["State"]["Running"] and data["State"]["Pid"] > 0 and data["Name"] == "/web"
    assert data["Config"]["Cmd"] == ["sleep", "60"] and data["GraphDriver"]["Name"] == "vfs"
    assert "Up" in job(vfs_engine, "ps")[1].decode()

    with pytest.raises(Conflict):
        store.create("busybox", ["true"], name="web")
    with pytest.raises(Conflict):
        store.remove(store.get("web"))  # running: needs force
    with pytest.raises(Conflict):
        store.start(store.get("web"))
    with pytest.raises(NoSuchImage):
        store.create("nosuchimage", ["true"])
    with pytest.raises(UsageError):
        store.create("busybox", ["true"], name="bad name!")
    with pytest.raises(NoSuchNetwork):
        store.create("busybox", ["true"], network="nosuchnet")
    with pytest.raises(UsageError):  # standalone, the default network is none: ports need a bridge
        store.create("busybox", ["true"], publish=["80"])
    with pytest.raises(UsageError):
        store.create("busybox", ["true"], network="bridge", publish=["80/sctp"])
    assert len(store.ids()) == 1  # none of the refused creates left anything
    status, _, err = job(vfs_engine, "rmi", "busybox")
    assert status != 0 and b"being used by container" in err  # the image a container needs stays
    assert job(vfs_engine, "rm", "web", force="1")[0] == 0
    with pytest.raises(NoSuchContainer):
        store.get("web")
    assert os.listdir(store.dir) == []


def test_info_names_execdriver_and_runtime(vfs_engine: Engine, exec_name):
    data = json.loads(job(vfs_engine, "info", json="1")[1])
    assert data["ExecutionDriver"] == exec_name
    rows = dict(data["ExecutionDriverStatus"])
    assert rows["Runtime"].startswith("runc" if exec_name == "oci" else "none")


def test_crun_runs_containers(tmp_path, busybox_tar):
    with make_engine(str(tmp_path / "root"), "vfs", "oci", busybox_tar, **{"exec.runtime": "crun"}) as e:
        status, out, err = job(e, "run", "busybox", "sh", "-c", "echo hi; exit 4", rm="1")
        assert (status, out) == (4, b"hi\n"), err
        assert json.loads(job(e, "info", json="1")[1])["ExecutionDriverStatus"][1][1].startswith("crun")


def test_logs_follow_streams_until_exit_without_holding_the_root(tmp_path, exec_name, busybox_tar):
    root = str(tmp_path / "root")
    make_engine(root, "vfs", exec_name, busybox_tar).close()
    script = "trap 'exit 0' TERM; for i in 1 2 3; do echo line$i; sleep 0.1; done; echo err >&2; "
    script += "while :; do sleep 0.05; done"
    ran = strata(root, "vfs", exec_name, "run", "-d", "--name", "talker", "busybox", "sh", "-c", script)
    assert ran.returncode == 0, ran.stderr
    follower = strata_popen(root, "vfs", exec_name, "logs", "-f", "talker")
    assert [follower.stdout.readline() for _ in range(3)] == [b"line1\n", b"line2\n", b"line3\n"]
    listed = strata(root, "vfs", exec_name, "ps")  # the follower does not hold the engine root
    assert listed.returncode == 0 and b"talker" in listed.stdout, listed.stderr
    assert strata(root, "vfs", exec_name, "stop", "talker").returncode == 0
    out, err = follower.communicate(timeout=60)
    assert (follower.returncode, out, err) == (0, b"", b"err\n")
    assert strata(root, "vfs", exec_name, "wait", "talker").stdout == b"0\n"
    assert strata(root, "vfs", exec_name, "rm", "talker").returncode == 0


# -- faults: the engine dies while a container runs ------------------------------------------


@pytest.mark.parametrize("driver_name", heavy_drivers())
def test_engine_killed_while_container_runs(driver_name, driver_root, exec_name, busybox_tar):
    make_engine(driver_root, driver_name, exec_name, busybox_tar).close()
    cli = strata_popen(driver_root, driver_name, exec_name, "run", "--name", "victim", "busybox", "sh", "-c",
                       "echo started; sleep 1; echo finished; exit 5")  # fmt: skip
    assert cli.stdout.readline() == b"started\n"
    cli.kill()  # kill -9 of the engine process
    cli.wait()
    cli.stdout.close()
    cli.stderr.close()

    with make_engine(driver_root, driver_name, exec_name) as e:
        c = e.containers.get("victim")
        assert c.state.running  # still running: its monitor outlived the engine
        assert e.containers.wait(c).code == 5
        assert e.containers.get("victim").state.exit_code == 5
        logs = e.job("logs", "victim")
        logs.run()
        assert logs.stdout.getvalue() == b"started\nfinished\n"

    # the container ended while no engine ran: the next engine reports it exited (5)
    cli = strata_popen(driver_root, driver_name, exec_name, "run", "--name", "victim2", "busybox", "sh", "-c",
                       "echo started; exit 6")  # fmt: skip
    assert cli.stdout.readline() == b"started\n"
    cli.kill()
    cli.wait()
    cli.stdout.close()
    cli.stderr.close()
    time.sleep(0.2)
    with make_engine(driver_root, driver_name, exec_name) as e:
        c = e.containers.get("victim2")
        deadline = time.monotonic() + 10
        while e.containers.refresh(c).state.running:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (c.state.status, c.state.exit_code) == ("exited", 6)
        layers = [e.containers.get(n).layer for n in ("victim", "victim2")]
        assert job(e, "rm", "victim", "victim2")[0] == 0
        assert e.containers.ids() == [] and not any(e.driver.exists(la) for la in layers)
        assert os.listdir(e.containers.dir) == []
    assert [m for m in mountutil.mounts_under(driver_root) if "/containers/" in m or "/mnt/" in m] == []


def test_rm_force_kills_a_container_a_dead_engine_left_running(tmp_path, exec_name, busybox_tar):
    root = str(tmp_path / "root")
    make_engine(root, "vfs", exec_name, busybox_tar).close()
    cli = strata_popen(root, "vfs", exec_name, "run", "--name", "orphan", "busybox", "sh", "-c", "echo up; sleep 60")
    assert cli.stdout.readline() == b"up\n"
    cli.kill()
    cli.wait()
    cli.stdout.close()
    cli.stderr.close()
    with make_engine(root, "vfs", exec_name) as e:
        c = e.containers.get("orphan")
        monitor = c.monitor["monitor_pid"]
        assert c.state.running and process_alive(monitor)
        assert job(e, "rm", "orphan", force="1")[0] == 0
        assert e.containers.ids() == []
    deadline = time.monotonic() + 5
    while process_alive(monitor):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_stop_sends_sigterm_first(vfs_engine: Engine):
    job(vfs_engine, "run", "busybox", "sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; "
        "while :; do sleep 0.05; done", detach="1", name="term")  # fmt: skip
    c = vfs_engine.containers.get("term")
    deadline = time.monotonic() + 10
    while job(vfs_engine, "logs", "term")[1] != b"ready\n":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert vfs_engine.containers.stop(c, timeout=30).code == 0
    assert job(vfs_engine, "logs", "term")[1] == b"ready\nbye\n"


def test_cli_run_forwards_signals_to_the_container(tmp_path, exec_name, busybox_tar):
    root = str(tmp_path / "root")
    make_engine(root, "vfs", exec_name, busybox_tar).close()
    script = "trap 'echo got INT; exit 130' INT; echo ready; while :; do sleep 0.05; done"
    cli = strata_popen(root, "vfs", exec_name, "run", "--rm", "busybox", "sh", "-c", script)
    assert cli.stdout.readline() == b"ready\n"
    cli.send_signal(signal.SIGINT)  # ^C
    out, err = cli.communicate(timeout=60)
    assert (cli.returncode, out) == (130, b"got INT\n"), err

    cli = strata_popen(root, "vfs", exec_name, "run", "--rm", "busybox", "sh", "-c", "echo ready; sleep 60")
    assert cli.stdout.readline() == b"ready\n"
    for _ in range(3):  # pid 1 ignores SIGINT: the third ^C kills it
        cli.send_signal(signal.SIGINT)
        time.sleep(0.1)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 137, err
    with make_engine(root, "vfs", exec_name) as e:
        assert e.containers.ids() == []


def test_parallel_run_jobs_in_one_engine(vfs_engine: Engine):
    """serveapi runs jobs in threads: runs started side by side keep their own output and status."""
    results: list[tuple[int, int, bytes]] = []

    def worker(i: int) -> None:
        for k in range(2):
            status, out, _ = job(vfs_engine, "run", "busybox", "sh", "-c", f"echo {i}-{k}; exit {i}", rm="1")
            results.append((i, status, out))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == sorted((i, i, f"{i}-{k}\n".encode()) for i in range(4) for k in range(2))
    assert vfs_engine.containers.ids() == []


@pytest.mark.parametrize("driver_name", graphdrivers.registered())
def test_detached_containers_keep_their_rootfs_after_the_cli_ends(driver_name, driver_root, busybox_tar):
    """`run -d` and `create` + `start` from the standalone CLI: the container runs on after the
    command that started it ends (aufs's FUSE union included), and a later command releases
    its mount when it has exited."""
    with make_engine(driver_root, driver_name, "oci", busybox_tar) as e:
        refused = e.driver.disown_unsupported()
    script = "sleep 1; cat /etc/motd; ls /bin/sh"
    ran = strata(driver_root, driver_name, "oci", "run", "-d", "--name", "bg", "busybox", "sh", "-c", script)
    if refused is not None:  # a pool this process set up: refused up front, nothing created
        assert ran.returncode == 1 and b"lose its filesystem" in ran.stderr, ran.stderr
        assert strata(driver_root, driver_name, "oci", "ps", "-a", "-q").stdout == b""
        return
    assert ran.returncode == 0, ran.stderr
    created = strata(driver_root, driver_name, "oci", "create", "--name", "bg2", "busybox", "sh", "-c", script)
    assert created.returncode == 0, created.stderr
    assert strata(driver_root, driver_name, "oci", "start", "bg2").returncode == 0
    for name in ("bg", "bg2"):
        waited = strata(driver_root, driver_name, "oci", "wait", name)
        assert waited.stdout == b"0\n", (waited.stdout, strata(driver_root, driver_name, "oci", "logs", name).stderr)
        logs = strata(driver_root, driver_name, "oci", "logs", name)
        assert logs.stdout == b"strata test image\n/bin/sh\n", logs.stderr
        assert strata(driver_root, driver_name, "oci", "rm", name).returncode == 0
    home = os.path.join(driver_root, driver_name)
    assert [p for p in mountutil.mounts_under(home) if p != home] == []
    assert not os.listdir(os.path.join(driver_root, driver_name, ".disowned"))


def test_strata_cli_honours_and_refuses_create_options(vfs_engine: Engine) -> None:
    """The `strata` flags reach the container; a refused value is Docker's 125 naming the flag."""
    status, out, err = job(vfs_engine, "run", "busybox", "sh", "-c",
                           "touch /x 2>/dev/null || echo ro; grep '^10.9.8.7' /etc/hosts; "
                           "grep CapEff /proc/self/status",
                           rm="1", read_only="1", add_host='["db:10.9.8.7"]', cap_drop='["ALL"]')
    assert status == 0, err
    assert out.decode().split() == ["ro", "10.9.8.7", "db", "CapEff:", "0000000000000000"]
    status, _, err = job(vfs_engine, "run", "busybox", "true", memory="1m")
    assert status == 125 and b"--memory (Memory)" in err and b"6MB" in err
    assert vfs_engine.containers.ids() == []


def test_image_volumes_strata_does_not_create_are_said(vfs_engine: Engine, tmp_path) -> None:
    """An image's VOLUME gets no anonymous volume here: create says so (Docker's warning
    channel) unless a mount covers the path."""
    import dataclasses
    import json as jsonlib

    from engine.images import testimages

    base = testimages.busybox(str(tmp_path / "build"))
    config = jsonlib.loads(base.config_bytes)
    config["config"]["Volumes"] = {"/data": {}}
    image = dataclasses.replace(base, tags=["withvol:1"], config_bytes=jsonlib.dumps(config).encode())
    assert job(vfs_engine, "load", testimages.write(str(tmp_path / "withvol.tar"), [image]))[0] == 0
    status, _, err = job(vfs_engine, "create", "withvol:1", "true")
    assert status == 0 and b"WARNING: the image declares VOLUME /data: strata creates no anonymous volumes" in err
    status, _, err = job(vfs_engine, "create", "withvol:1", "true", tmpfs='["/data"]')
    assert status == 0 and b"VOLUME" not in err, err

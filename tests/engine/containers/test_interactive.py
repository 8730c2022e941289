"""Interactive containers, exec, lifecycle and observation through the engine's jobs and the
`strata` CLI, on both execdrivers (native: setns, its own cgroups; oci: runc)."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time

import pytest

from engine.engine import Engine
from tests.engine.containers.conftest import EXECS, REPO, job, strata
from tests.support import terminal

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done"


def _counter(engine: Engine, name: str) -> int:
    pid = engine.containers.inspect(engine.containers.get(name))["State"]["Pid"]
    with open(f"/proc/{pid}/root/tmp/counter") as f:
        return int(f.read().strip() or 0)


def _wait_for_counter(engine: Engine, name: str) -> int:
    for _ in range(200):
        try:
            if (value := _counter(engine, name)) > 0:
                return value
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("the counter never started")


def test_run_with_stdin_and_exec(vfs_engine: Engine):
    run = vfs_engine.job("run", "busybox", "sh", "-c", "cat; echo done", stdin=io.BytesIO(b"hi\n"),
                         options={"interactive": True, "rm": True})
    assert run.run() == 0 and run.stdout.getvalue() == b"hi\ndone\n"

    assert job(vfs_engine, "run", "busybox", "sleep", "60", detach="1", name="box")[0] == 0
    status, out, err = job(vfs_engine, "exec", "box", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (status, out, err) == (7, b"out\n", b"err\n")
    status, out, _ = job(vfs_engine, "exec", "box", "sh", "-c", "echo $FOO; id -u; id -g; pwd",
                         env='["FOO=bar"]', user="1000:1001", workdir="/tmp")
    assert (status, out) == (0, b"bar\n1000\n1001\n/tmp\n")
    piped = vfs_engine.job("exec", "box", "sh", "-c", "cat; echo end", stdin=io.BytesIO(b"in\n"),
                           options={"interactive": True})
    assert piped.run() == 0 and piped.stdout.getvalue() == b"in\nend\n"
    assert job(vfs_engine, "exec", "box", "no-such-command")[0] == 127
    assert job(vfs_engine, "exec", "box", "sh", "-c", "touch /tmp/detached", detach="1")[0] == 0
    for _ in range(100):
        if job(vfs_engine, "exec", "box", "test", "-e", "/tmp/detached")[0] == 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the detached exec never ran")
    # an exec'd process is in the container's pid namespace and cgroups
    assert job(vfs_engine, "exec", "box", "sh", "-c", "echo $$")[1] != b"1\n"
    top = json.loads(job(vfs_engine, "top", "box", json="1")[1])
    assert [row[-1] for row in top["Processes"]] == ["sleep 60"]
    job(vfs_engine, "kill", "box")
    job(vfs_engine, "wait", "box")
    assert job(vfs_engine, "exec", "box", "true")[0] == 1  # not running: refused
    job(vfs_engine, "rm", "box")


def test_pause_stats_update_restart_rename(vfs_engine: Engine):
    store = vfs_engine.containers
    assert job(vfs_engine, "run", "busybox", "sh", "-c", COUNTER, detach="1", name="count")[0] == 0
    _wait_for_counter(vfs_engine, "count")
    assert job(vfs_engine, "pause", "count")[0] == 0
    frozen = _counter(vfs_engine, "count")
    time.sleep(0.5)
    assert _counter(vfs_engine, "count") == frozen
    assert store.inspect(store.get("count"))["State"]["Paused"] is True
    assert job(vfs_engine, "exec", "count", "true")[0] == 1  # a paused container takes no exec
    assert job(vfs_engine, "pause", "count")[0] == 1  # already paused
    assert job(vfs_engine, "unpause", "count")[0] == 0
    for _ in range(100):
        if _counter(vfs_engine, "count") > frozen:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the counter did not go on after unpause")

    lines = job(vfs_engine, "stats", "count", no_stream="1", json="1")[1].splitlines()
    [reading] = [json.loads(line) for line in lines]
    assert reading["pids_stats"]["current"] >= 1
    assert reading["memory_stats"]["usage"] > 0
    assert reading["cpu_stats"]["cpu_usage"]["total_usage"] >= reading["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    table = job(vfs_engine, "stats", "count", no_stream="1")[1].decode()
    assert table.startswith("CONTAINER ID") and "count" in table

    assert job(vfs_engine, "update", "count", memory="64m", pids_limit="50")[0] == 0
    groups = store.cgroups(store.get("count"))
    with open(os.path.join(groups.paths["memory"], "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 64 << 20
    assert job(vfs_engine, "update", "count", memory="nonsense")[0] == 125  # read by create's parser: its status

    first_pid = store.inspect(store.get("count"))["State"]["Pid"]
    assert job(vfs_engine, "restart", "count", time="0.5")[0] == 0
    again = store.inspect(store.get("count"))
    assert again["State"]["Running"] and again["State"]["Pid"] != first_pid
    groups = store.cgroups(store.get("count"))  # update's limits outlive the restart
    with open(os.path.join(groups.paths["pids"], "pids.max")) as f:
        assert f.read().strip() == "50"

    assert job(vfs_engine, "rename", "count", "counted")[0] == 0
    assert store.get("counted").id == again["Id"]
    job(vfs_engine, "run", "busybox", "true", name="other")
    status, _, err = job(vfs_engine, "rename", "counted", "other")
    assert status == 1 and b"already in use" in err
    job(vfs_engine, "rm", "other")
    assert job(vfs_engine, "rm", "counted", force="1")[0] == 0


def test_cp_both_ways_is_confined(vfs_engine: Engine, tmp_path):
    store = vfs_engine.containers
    job(vfs_engine, "run", "busybox", "sh", "-c",
        "mkdir -p /data/sub && echo one > /data/sub/f && ln -s /etc /data/escape", name="files")
    out = tmp_path / "out"
    out.mkdir()
    assert job(vfs_engine, "cp", "files:/data", str(out))[0] == 0
    assert (out / "data" / "sub" / "f").read_text() == "one\n"
    assert os.readlink(out / "data" / "escape") == "/etc"  # the link itself, as docker cp
    assert job(vfs_engine, "cp", "files:/data/sub/f", str(out / "renamed"))[0] == 0
    assert (out / "renamed").read_text() == "one\n"

    local = tmp_path / "local.txt"
    local.write_text("from the host\n")
    assert job(vfs_engine, "cp", str(local), "files:/data/sub")[0] == 0
    assert job(vfs_engine, "cp", str(local), "files:/data/new-name")[0] == 0
    # through a symlink in the container: it resolves inside the rootfs, not to the host's /etc
    assert job(vfs_engine, "cp", str(local), "files:/data/escape/")[0] == 0
    assert not os.path.exists("/etc/local.txt")
    c = store.get("files")
    rootfs = vfs_engine.driver.get(c.layer)
    try:
        with open(os.path.join(rootfs, "data/sub/local.txt")) as f:
            assert f.read() == "from the host\n"
        assert os.path.exists(os.path.join(rootfs, "data/new-name"))
        assert os.path.exists(os.path.join(rootfs, "etc/local.txt"))
    finally:
        vfs_engine.driver.put(c.layer)
    assert job(vfs_engine, "cp", "files:/no/such", str(out))[0] == 1
    assert job(vfs_engine, "cp", str(local), str(out))[0] == 2  # neither side is a container

    # an archive naming a path above its root is refused and changes nothing
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        info = tarfile.TarInfo("../../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    bad.seek(0)
    from engine.containers import copy
    from engine.errors import UsageError

    try:
        copy.put_archive(store, c, "/data", bad, no_overwrite_dir_non_dir=False, copy_uid_gid=False)
        raise AssertionError("an escaping archive was applied")
    except UsageError:
        pass
    job(vfs_engine, "rm", "files")


@pytest.mark.parametrize("exec_name", ["native"])  # cp reads the rootfs: no execdriver in the path
def test_cli_cp_archive_mode_and_follow_link(tmp_path, exec_name, busybox_tar):
    root = str(tmp_path / "root")
    assert strata(root, "vfs", exec_name, "load", "-i", busybox_tar).returncode == 0
    assert strata(root, "vfs", exec_name, "run", "-d", "--name", "files", "busybox", "sleep", "60").returncode == 0
    made = strata(root, "vfs", exec_name, "exec", "files", "sh", "-c",
                  "echo data > /f && chown 7:8 /f && ln -s f /link")
    assert made.returncode == 0, made.stderr
    local = tmp_path / "in.txt"
    local.write_text("in\n")
    os.chown(local, 1234, 5678)
    os.symlink("in.txt", tmp_path / "in-link")
    for args in (("cp", str(local), "files:/plain"), ("cp", "-a", str(local), "files:/kept"),
                 ("cp", "-L", str(tmp_path / "in-link"), "files:/followed"), ("cp", "files:/f", str(tmp_path / "mine")),
                 ("cp", "--archive", "files:/f", str(tmp_path / "theirs")),
                 ("cp", "--follow-link", "files:/link", str(tmp_path / "out-followed"))):
        done = strata(root, "vfs", exec_name, *args)
        assert done.returncode == 0, (args, done.stderr)
    stats = strata(root, "vfs", exec_name, "exec", "files", "stat", "-c", "%n %u:%g %F", "/plain", "/kept",
                   "/followed", "/link")
    assert stats.stdout.decode().splitlines() == ["/plain 0:0 regular file", "/kept 1234:5678 regular file",
                                                  "/followed 0:0 regular file", "/link 0:0 symbolic link"]
    assert (os.stat(tmp_path / "mine").st_uid, os.stat(tmp_path / "theirs").st_uid) == (os.getuid(), 7)
    assert os.stat(tmp_path / "theirs").st_gid == 8
    assert (tmp_path / "out-followed").read_text() == "data\n" and not os.path.islink(tmp_path / "out-followed")
    assert strata(root, "vfs", exec_name, "rm", "-f", "files").returncode == 0


def test_events_and_logs_tail(vfs_engine: Engine):
    since = str(time.time())
    job(vfs_engine, "run", "busybox", "sh", "-c", "seq 1 5", name="seq")
    assert job(vfs_engine, "logs", "seq", tail="2")[1] == b"4\n5\n"
    assert job(vfs_engine, "logs", "seq", tail="0")[1] == b""
    assert job(vfs_engine, "logs", "seq", tail="x")[0] == 2
    job(vfs_engine, "rm", "seq")
    status, out, _ = job(vfs_engine, "events", since=since, until=str(time.time()), json="1")
    actions = [(e["Type"], e["Action"]) for e in map(json.loads, out.splitlines())]
    assert actions == [("container", "create"), ("container", "start"), ("container", "die"),
                       ("container", "destroy")]
    status, out, _ = job(vfs_engine, "events", since=since, until=str(time.time()), filter='["event=die"]')
    assert status == 0 and out.count(b"\n") == 1 and b"container die" in out and b"exitCode=0" in out
    assert job(vfs_engine, "events", filter='["label=x"]', until="0")[0] == 2


def test_cli_run_and_exec_with_a_tty(tmp_path, exec_name, busybox_tar):
    root = str(tmp_path / "root")
    assert strata(root, "vfs", exec_name, "load", "-i", busybox_tar).returncode == 0
    opts = [x for k, v in EXECS[exec_name].items() for x in ("-o", f"{k}={v}")]
    base = [sys.executable, "-m", "engine.cli", "--root", root, "-s", "vfs", *opts]
    env = {**os.environ, "PYTHONPATH": REPO}
    piped = strata(root, "vfs", exec_name, "run", "-i", "--rm", "busybox", "cat", input=b"hi\n")
    assert (piped.returncode, piped.stdout) == (0, b"hi\n")
    assert terminal.shell_session(terminal.spawn([*base, "run", "-it", "--rm", "busybox", "sh"], env)) == 3
    assert strata(root, "vfs", exec_name, "run", "-d", "--name", "box", "busybox", "sleep", "60").returncode == 0
    assert terminal.shell_session(terminal.spawn([*base, "exec", "-it", "box", "sh"], env)) == 3
    assert strata(root, "vfs", exec_name, "rm", "-f", "box").returncode == 0
    refused = strata(root, "vfs", exec_name, "run", "-d", "-t", "busybox", "sh")
    assert refused.returncode != 0 and b"long-lived engine" in refused.stderr
    assert strata(root, "vfs", exec_name, "ps", "-aq").stdout == b""

"""A container's log as json-file records: the `strata logs` command's --since, --until,
--timestamps, --tail and --follow, and a log a crash cut mid-record."""

from __future__ import annotations

import json
import re
import time

import pytest

from engine.containers import logfile
from engine.engine import Engine
from tests.engine.containers.conftest import job, strata

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


@pytest.mark.parametrize("exec_name", ["native", "oci"])
def test_cli_logs_times(tmp_path, exec_name, busybox_tar):
    root = str(tmp_path / "root")
    assert strata(root, "vfs", exec_name, "load", "-i", busybox_tar).returncode == 0
    ran = strata(root, "vfs", exec_name, "run", "--name", "lines", "busybox", "sh", "-c",
                 "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done")
    assert (ran.stdout, ran.stderr) == (b"out1\nout2\nout3\n", b"err1\nerr2\nerr3\n")
    stamped = strata(root, "vfs", exec_name, "logs", "-t", "lines")
    lines = stamped.stdout.splitlines(keepends=True)
    assert len(lines) == 3 and all(STAMP.match(line) for line in lines)
    assert [line[31:] for line in lines] == [b"out1\n", b"out2\n", b"out3\n"]
    second = lines[1][:30].decode()
    since = strata(root, "vfs", exec_name, "logs", "--since", second, "lines")
    assert since.stdout == b"out2\nout3\n" and since.stderr in (b"err2\nerr3\n", b"err3\n")
    until = strata(root, "vfs", exec_name, "logs", "--until", second, "--timestamps", "lines")
    assert [line[31:] for line in until.stdout.splitlines(keepends=True)] == [b"out1\n", b"out2\n"]
    tail = strata(root, "vfs", exec_name, "logs", "-n", "1", "lines")
    # the last record of the log: out3 or err3, whichever of the two pipes' lines came last
    assert tail.stdout + tail.stderr in (b"out3\n", b"err3\n") and b"" in (tail.stdout, tail.stderr)
    bad = strata(root, "vfs", exec_name, "logs", "--until", "not-a-time", "lines")
    assert bad.returncode != 0 and b"--until" in bad.stderr

    # -f follows without holding the root, and stops at --until while the container runs on
    assert strata(root, "vfs", exec_name, "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                  "while :; do echo tick; sleep 0.05; done").returncode == 0
    followed = strata(root, "vfs", exec_name, "logs", "-f", "--until", f"{time.time() + 1:.9f}", "ticker")
    assert followed.returncode == 0 and set(followed.stdout.splitlines()) == {b"tick"}
    assert strata(root, "vfs", exec_name, "rm", "-f", "lines", "ticker").returncode == 0


def test_a_record_cut_by_a_crash_is_skipped(vfs_engine: Engine):
    job(vfs_engine, "run", "busybox", "echo", "before", name="cut")
    store = vfs_engine.containers
    path = store.log_path(store.get("cut"))
    with open(path, "ab") as f:
        f.write(b'{"log":"half a rec')  # what a crash in the middle of a write leaves
    assert job(vfs_engine, "logs", "cut")[1] == b"before\n"  # the unfinished record is not read
    assert job(vfs_engine, "start", "cut")[0] == 0
    assert job(vfs_engine, "wait", "cut")[1] == b"0\n"
    assert job(vfs_engine, "logs", "cut")[1] == b"before\nbefore\n"  # the next writer ended it; skipped
    with open(path, "rb") as f:
        records = f.read().splitlines()
    assert records[1] == b'{"log":"half a rec' and json.loads(records[2])["stream"] == "stdout"
    job(vfs_engine, "rm", "cut")


def test_lines_keep_their_bytes_and_long_ones_are_split(tmp_path):
    path = str(tmp_path / "c-json.log")
    fd = logfile.open_for_append(path)
    logfile.LineWriter(fd, "stderr").feed(b"\xff\xfe not utf-8\n" + b"x" * (logfile.MAX_LINE + 10) + b"\npartial")
    with open(path, "rb") as f:
        lines = list(logfile.read_lines(f))
    assert [len(line.data) for line in lines] == [13, logfile.MAX_LINE, 11, 7]
    assert lines[0].data == b"\xff\xfe not utf-8\n" and {line.stream for line in lines} == {"stderr"}
    assert b"".join(line.data for line in lines[1:]) == b"x" * (logfile.MAX_LINE + 10) + b"\npartial"

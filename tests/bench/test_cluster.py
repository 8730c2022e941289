"""`bench run` made of cells: a matrix on a real Dask scheduler and two workers on 127.0.0.1
(subprocesses), a worker killed in the middle of a cell, `--cluster local:N`, `--isolate
process`, and matrix files the harness refuses. Nothing is left running or mounted."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

from bench import cells, cli, cluster, results
from graphdrivers import loopdev, mountutil

from .conftest import REPO, bench

HOST = platform.node()
SMALL = """
drivers = ["vfs", "overlay2"]
workloads = ["busybox"]
scenario = ["layer-create", "rootfs"]
quick = true
repeat = {repeat}
warmup = 0
depths = [1]
"""


@dataclass
class Scheduler:
    address: str
    workers: list[subprocess.Popen]


def _wait_for(what: str, check, timeout: float = 120.0):
    """Poll `check` until it returns something true (a wait for an event, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def scheduler(tmp_path) -> Iterator[Scheduler]:
    """`dask scheduler` and two `dask worker --nthreads 1 --resources bench=1` on 127.0.0.1."""
    from distributed import Client

    sched_file = str(tmp_path / "scheduler.json")
    common = {"env": cells.child_env(), "stdin": subprocess.DEVNULL, "start_new_session": True}
    log = open(tmp_path / "dask.log", "wb")
    procs = [
        subprocess.Popen(
            cluster.dask_command(
                "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", sched_file
            ),
            stdout=log,
            stderr=log,
            **common,
        )
    ]
    try:
        address = _wait_for("the scheduler file", lambda: os.path.exists(sched_file) and os.path.getsize(sched_file))
        address = json.load(open(sched_file))["address"]
        for i in range(2):
            args = cluster.worker_args(address, f"w{i}", str(tmp_path))
            procs.append(subprocess.Popen(cluster.dask_command(*args), stdout=log, stderr=log, **common))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield Scheduler(address, procs[1:])
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=60)
        log.close()


def _cell_processes(parent: int) -> list[int]:
    """The `bench.cells` processes a worker started."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError):
            continue
        if ppid == parent and b"bench.cells" in cmdline:
            found.append(int(pid))
    return found


def _nothing_left_of_cells() -> bool:
    tmp = os.environ.get("TMPDIR", "/tmp")
    mounts = [p for p, _, _ in mountutil.mount_table() if "/strata-cell-" in p and p.startswith(tmp)]
    loops = [
        name
        for name in os.listdir("/sys/block")
        if name.startswith("loop") and "/strata-cell-" in (loopdev.backing_file(name) or "")
    ]
    return not mounts and not loops


def _matrix(tmp_path, repeat: int) -> str:
    path = tmp_path / "matrix.toml"
    path.write_text(SMALL.format(repeat=repeat))
    return str(path)


def test_matrix_across_two_workers_merges_one_dataset(scheduler: Scheduler, tmp_path) -> None:
    out = str(tmp_path / "out")
    proc = bench("run", "--matrix", _matrix(tmp_path, 2), "--cluster", scheduler.address, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(line.startswith("┃ host ") for line in proc.stdout.splitlines())  # the table has a host column
    df = pd.read_parquet(os.path.join(out, results.PARQUET))
    assert list(df.columns) == list(results.COLUMNS) and df["run_id"].nunique() == 1
    assert set(df["host"]) == {HOST} and set(df["driver"]) == {"vfs", "overlay2"}
    run = results.load_run(out)
    workers = run["cluster"]["workers"]
    assert len(workers) == 2 and all(w["refused"] == "" and w["hostname"] == HOST for w in workers.values())
    assert set(df["worker"]) <= set(workers)
    assert run["cluster"]["concurrent_on_host"] is True  # two workers on one host: said, not hidden
    by_cell = {c["dimensions"]["driver"]: c for c in run["cells"]}
    assert set(by_cell) == {"vfs", "overlay2"}
    for driver, cell in by_cell.items():
        assert cell["status"] == "ok" and cell["exit_code"] == 0
        assert [a["outcome"] for a in cell["attempts"]] == ["ok"]
        rows = df[df["driver"] == driver]
        assert set(rows["worker"]) == {cell["worker"]}  # a cell's rows come from the worker that ran it
        assert set(rows["scenario"]) == {"layer-create", "rootfs"}
        assert (rows[rows["seconds"].notna()]["repetition"].max()) == 1  # repeat 2
        assert cell["run"]["drivers"][driver]["status"] == "ok"
    host = run["hosts"][HOST]
    assert sorted(host["workers"]) == sorted(workers)
    assert host["git_commit"] == run["git_commit"] and host["machine"]["kernel"] == os.uname().release
    assert host["packages"]["pandas"] == pd.__version__
    assert run["faults"] == [] and run["matrix"]["drivers"] == ["vfs", "overlay2"]
    assert run["config"]["repeat"] == 2 and run["config"]["warmup"] == 0
    assert _nothing_left_of_cells()


def test_worker_killed_mid_cell_is_recorded_and_the_run_completes(scheduler: Scheduler, tmp_path) -> None:
    out = str(tmp_path / "out")
    args = ["run", "--matrix", _matrix(tmp_path, 6), "--cluster", scheduler.address, "--out", out]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO, "COLUMNS": "200"},
    )
    victim = scheduler.workers[0]
    child = _wait_for("a cell running on the first worker", lambda: _cell_processes(victim.pid))[0]
    _wait_for(
        "the cell to mount its backing filesystem",
        lambda: any("/strata-cell-" in p for p, _, _ in mountutil.mount_table()),
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), stdout + stderr
    run = results.load_run(out)
    (fault,) = run["faults"]
    dead = fault["worker"]
    assert fault["host"] == HOST and "died" in fault["reason"]
    hit = next(c for c in run["cells"] if c["cell"] == fault["cell"])
    assert hit["attempts"][0] == {**hit["attempts"][0], "worker": dead, "outcome": "worker lost"}
    # retried once on the other worker of the same host, or recorded failed
    if hit["status"] == "ok":
        assert len(hit["attempts"]) == 2 and hit["attempts"][1]["worker"] != dead
        assert proc.returncode == 0
    else:
        assert hit["status"] == "failed" and hit["reason"] and proc.returncode == 1
    other = next(c for c in run["cells"] if c["cell"] != fault["cell"])
    assert other["status"] == "ok"
    df = pd.read_parquet(os.path.join(out, results.PARQUET))
    assert dead not in set(df["worker"])  # the lost attempt's rows never arrived
    assert set(df["driver"]) == {c["dimensions"]["driver"] for c in run["cells"] if c["status"] == "ok"}
    # the killed worker's cell process got SIGTERM and tore its mounts down
    _wait_for("the orphaned cell process to finish", lambda: not os.path.exists(f"/proc/{child}"))
    assert _nothing_left_of_cells()


def test_local_cluster_runs_cells_and_stops_its_processes(tmp_path) -> None:
    out = str(tmp_path / "out")
    proc = bench(
        "run", "--cluster", "local:2", "--driver", "vfs", "--driver", "overlay2", "--quick",
        "--scenario", "layer-create", "--repeat", "1", "--warmup", "0", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = results.load_run(out)
    assert run["cluster"]["kind"] == "local" and run["cluster"]["started_workers"] == 2
    assert {c["status"] for c in run["cells"]} == {"ok"}
    df = pd.read_parquet(os.path.join(out, results.PARQUET))
    assert set(df["driver"]) == {"vfs", "overlay2"} and set(df["host"]) == {HOST}
    assert "measurements overlap" in proc.stderr.replace("\n", " ")
    assert _nothing_left_of_cells()


def test_isolate_process_runs_each_driver_in_a_fresh_process(tmp_path) -> None:
    out = str(tmp_path / "out")
    proc = bench(
        "run", "--isolate", "process", "--driver", "vfs", "--quick", "--scenario", "layer-create",
        "--repeat", "2", "--warmup", "0", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = pd.read_parquet(os.path.join(out, results.PARQUET))
    assert set(df["worker"]) == {"process"} and set(df["host"]) == {HOST} and set(df["driver"]) == {"vfs"}
    run = results.load_run(out)
    (cell,) = run["cells"]
    assert cell["status"] == "ok" and cell["dimensions"] == {"host": HOST, "workload": "busybox", "driver": "vfs"}
    assert run["cluster"] == {"kind": "none", "isolate": "process"}


def test_plain_run_rows_say_host_and_local_worker(quick_run) -> None:
    df = pd.read_parquet(os.path.join(quick_run.out, results.PARQUET))
    assert set(df["host"]) == {HOST} and set(df["worker"]) == {"local"}


def _refused(capsys, *args: str) -> str:
    """`bench run ARGS` refused before anything is set up: exit 2 and what stderr says."""
    try:
        code = cli.main(["run", *args])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ('drivers = ["vfs"]\nfilesystems = ["xfs"]\n', [], "filesystems: no such `bench run` option"),
        ('drivers = ["vfs"]\nrepeat = 2\n', ["--repeat", "3"], "repeat is given in"),
        ('drivers = ["vfs"]\nworkloads = ["nope"]\n', [], "unknown workload nope"),
        ('drivers = ["vfs"]\nquick = "yes"\n', [], "quick wants true or false"),
        ("drivers = [\n", [], "not TOML"),
        ('drivers = ["vfs"]\nhosts = ["elsewhere"]\n', [], "--host names a cluster's host"),
    ],
)
def test_matrix_files_that_are_refused(capsys, tmp_path, text: str, args: list[str], message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    assert message in _refused(capsys, "--matrix", str(path), *args, "--out", str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--driver", "vfs", "--cluster", "local:0"], "local:N wants N >= 1"),
        (["--driver", "vfs", "--cluster", "http://x:1"], "wants tcp://HOST:PORT"),
        (["--driver", "vfs", "--host", "a"], "needs --cluster"),
        (["--driver", "vfs", "--cluster", "local:1", "--isolate", "none"], "--isolate none cannot apply"),
        (["--quick"], "give --driver"),
    ],
)
def test_cluster_options_that_are_refused(capsys, args: list[str], message: str) -> None:
    assert message in _refused(capsys, *args)


def test_workers_of_another_commit_or_not_root_are_refused() -> None:
    good = {"uid": 0, "git_commit": "abc"}
    assert cluster.refusal(good, "abc") == ""
    assert "differs from the client's abc" in cluster.refusal({**good, "git_commit": "def"}, "abc")
    assert "not root" in cluster.refusal({**good, "uid": 1000}, "abc")


def test_sweep_removes_only_cell_directories_whose_process_is_gone(tmp_path) -> None:
    dead = subprocess.Popen(["true"])  # a pid that has exited
    dead.wait()
    for name, pid in (("strata-cell-dead", dead.pid), ("strata-cell-live", os.getpid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / cells.PID).write_text(str(pid))
        (tmp_path / name / "out").mkdir()
    (tmp_path / "strata-cell-starting").mkdir()  # no pid yet: its cell is being set up
    assert cells.sweep(str(tmp_path)) == [str(tmp_path / "strata-cell-dead")]
    assert sorted(os.listdir(tmp_path)) == ["strata-cell-live", "strata-cell-starting"]

"""One cell of a run's matrix, measured by the ordinary harness in a fresh process.

A cell is a dict of dimensions (`host`, `workload`, `driver`) plus the run options
(a RunConfig); running it is `bench.runner.Run` on that subset, in a child process
(`python -m bench.cells CELL_DIR`), which writes its rows and its run.json part into the
cell directory. The same function runs a cell for `--isolate process` on this machine and
inside a Dask worker (bench.cluster), so a cell's code path is the same everywhere.

The child asks the kernel for SIGTERM when the thread that started it dies
(PR_SET_PDEATHSIG): if its worker is killed, the harness still tears down its mounts and
loop devices (it treats SIGTERM as Ctrl-C) instead of leaving them behind.
"""

from __future__ import annotations

import ctypes
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import pandas as pd

from graphdrivers import mountutil

from . import results
from .config import RunConfig

log = logging.getLogger(__name__)

DIMENSIONS = ("host", "workload", "driver")  # what tells cells apart, in this order
PREFIX, CELL_JSON, LOG, PID = "strata-cell-", "cell.json", "cell.log", "cell.pid"
IMAGE_PREFIX = "image:"  # a workload dimension naming an image archive (--image)
PR_SET_PDEATHSIG = 1
POLL = 0.5  # seconds between looks at a running cell (and at its stop signal)
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child calls it between fork and exec


class CellError(Exception):
    """A cell could not be run at all (its process could not start or wrote nothing)."""


@dataclass(frozen=True)
class Cell:
    """One point of the matrix: a value per dimension; `host` is where it must run."""

    dimensions: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, **dims: str) -> Cell:
        unknown = set(dims) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown cell dimensions {sorted(unknown)}")
        return cls(tuple((k, dims[k]) for k in DIMENSIONS if k in dims))

    def __getitem__(self, key: str) -> str:
        return dict(self.dimensions)[key]

    @property
    def id(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.dimensions)

    def config(self, base: RunConfig) -> RunConfig:
        """The run options of this cell: the base options narrowed to its driver and workload."""
        workload = self["workload"]
        image = workload[len(IMAGE_PREFIX) :] if workload.startswith(IMAGE_PREFIX) else None
        return replace(
            base,
            drivers=[self["driver"]],
            workload=base.workload if image else workload,
            image=image,
        )


@dataclass
class CellResult:
    """What came back from a cell: its rows, its run.json part, and how its process ended."""

    cell: Cell
    rows: pd.DataFrame
    part: dict[str, object]
    exit_code: int
    worker: str
    log_tail: str = ""
    attempts: list[dict[str, object]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """ok, partial (some rows, some failure), failed, or interrupted."""
        if self.exit_code == 130:
            return "interrupted"
        drivers = self.part.get("drivers") or {}
        states = {d.get("status") for d in drivers.values()} if isinstance(drivers, dict) else set()
        if self.exit_code == 0 and states <= {"ok"}:
            return "ok"
        return "partial" if len(self.rows) else "failed"

    @property
    def reason(self) -> str:
        errors = [
            f"{name}: {e}"
            for name, d in (self.part.get("drivers") or {}).items()  # type: ignore[union-attr]
            for e in d.get("errors", [])
        ]
        return "; ".join(errors) or ("" if self.exit_code in (0, 130) else self.log_tail)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started us exits."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_env() -> dict[str, str]:
    """The environment of a process that must import this checkout of strata, as we do."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def run_in_process(
    cell: Cell,
    base: RunConfig,
    run_id: str,
    worker: str,
    *,
    stop: Callable[[], bool] = lambda: False,
    argv: list[str] | None = None,
) -> CellResult:
    """Run `cell` in a fresh `python -m bench.cells` process and collect what it wrote.

    `stop` is polled while the cell runs; when it turns true the cell gets SIGINT (the
    harness tears down and writes the rows so far). The cell directory is removed after.
    """
    parent = base.scratch or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    sweep(parent)
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    try:
        out = os.path.join(directory, "out")
        config = replace(cell.config(base), out=out, scratch=os.path.join(directory, "scratch"))
        spec = {
            "dimensions": dict(cell.dimensions),
            "config": config.facts(),
            "run_id": run_id,
            "worker": worker,
            "argv": argv or ["bench", "run", "(cell)", cell.id],
        }
        with open(os.path.join(directory, CELL_JSON), "w") as f:
            json.dump(spec, f)
        with open(os.path.join(directory, LOG), "wb") as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.cells", directory],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                preexec_fn=_die_with_parent,
            )
            with open(os.path.join(directory, PID), "w") as f:
                f.write(str(proc.pid))
            interrupted = _wait(proc, stop)
        with open(os.path.join(directory, LOG), errors="replace") as f:
            tail = "".join(f.readlines()[-20:]).strip()
        if not os.path.exists(os.path.join(out, results.RUN_JSON)):
            if interrupted:
                raise KeyboardInterrupt(f"cell {cell.id} stopped before it measured anything")
            raise CellError(f"cell {cell.id} exited {proc.returncode} without results: {tail[-2000:]}")
        rows = pd.read_parquet(os.path.join(out, results.PARQUET)).astype(results.COLUMNS)
        return CellResult(cell, rows, results.load_run(out), proc.returncode, worker, tail[-2000:])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def sweep(parent: str) -> list[str]:
    """Remove the cell directories a killed worker left in `parent`: those whose cell process
    is gone and under which nothing is mounted (it tore its mounts down on SIGTERM)."""
    removed = []
    for directory in glob.glob(os.path.join(parent, PREFIX + "*")):
        try:
            with open(os.path.join(directory, PID)) as f:
                pid = int(f.read())
        except (OSError, ValueError):  # not started yet, or not ours
            continue
        if os.path.exists(f"/proc/{pid}") or mountutil.mounts_under(directory):
            continue
        log.info("removing %s, left by a cell whose worker died", directory)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _wait(proc: subprocess.Popen, stop: Callable[[], bool]) -> bool:
    """Wait for the cell's process; SIGINT it when `stop()` or a Ctrl-C here asks to stop.
    Never returns before it has exited (its mounts are torn down): True if it was stopped."""
    stopped = False
    while proc.poll() is None:
        try:
            if not stopped and stop():
                proc.send_signal(signal.SIGINT)
                stopped = True
            time.sleep(POLL)
        except KeyboardInterrupt:  # the terminal's Ctrl-C reached the child too; make sure
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            stopped = True
    return stopped


def _main(directory: str) -> int:
    """The child: the ordinary harness on the cell's options; results into DIRECTORY/out."""
    from .runner import Run

    with open(os.path.join(directory, CELL_JSON)) as f:
        spec = json.load(f)
    config = RunConfig(**{**spec["config"], "depths": tuple(spec["config"]["depths"])})
    return Run(config, spec["argv"], run_id=spec["run_id"], worker=spec["worker"]).execute()


def part_of(result: CellResult) -> Mapping[str, object]:
    """The cell's run.json part as merged into the matrix run's record."""
    keep = ("drivers", "warnings", "repetitions", "workload", "execdrivers", "io", "statistics", "duration_seconds")
    return {k: result.part[k] for k in keep if k in result.part}


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))

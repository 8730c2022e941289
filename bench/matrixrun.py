"""A run made of cells: `bench run` with `--matrix`, `--isolate process` or `--cluster`.

Every cell runs the ordinary harness in a fresh process (bench.cells) -- one after another
on this machine, or on the workers of a Dask cluster (bench.cluster) -- and the rows of all
cells are merged into one result directory with one run id: rows carry `host` and
`worker`, run.json holds each host's environment and each cell's status, attempts and
run.json part. A cell that fails, or whose worker dies, is recorded and the run goes on;
Ctrl-C stops the cells and writes what arrived (exit 130).
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import time

import pandas as pd
from rich.console import Console

from . import cells, cluster, machine, results
from .cluster import ClusterError, Outcome
from .matrix import ALL_HOSTS, Matrix
from .runner import (
    EXIT_DRIVER_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    _sigterm_as_interrupt,
    new_run_id,
    print_summary,
    run_header,
    signals_held,
    statistics,
)
from .table import summary

log = logging.getLogger(__name__)

EXIT_USAGE = 2
CONCURRENT_NOTE = (
    "several workers on one host ran cells at the same time: their measurements overlap "
    "(fine for trying the path; run one worker per host to measure)"
)


class MatrixRun:
    def __init__(self, matrix: Matrix, argv: list[str], cluster_address: str | None, console: Console | None = None):
        self.matrix = matrix
        self.argv = argv
        self.address = cluster_address
        self.console = console or Console(stderr=True)
        self.run_id = new_run_id()
        self.out = matrix.config.out or os.path.join("results", self.run_id.split("-")[0])
        self.started = time.time()
        self.warnings: list[str] = []
        self.outcomes: list[Outcome] = []
        self.hosts: dict[str, dict[str, object]] = {}
        self.cluster: dict[str, object] = {}
        self.faults: list[dict[str, object]] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.console.print(f"[bold yellow]warning:[/] {message}", highlight=False)

    def execute(self) -> int:
        old_term = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        interrupted = False
        try:
            if self.address:
                self._on_cluster()
            else:
                self._here()
        except ClusterError as exc:
            self.console.print(f"bench: {exc}", highlight=False)
            return EXIT_USAGE
        except KeyboardInterrupt:
            interrupted = True
        finally:
            signal.signal(signal.SIGTERM, old_term)
        interrupted = interrupted or any(o.status == "interrupted" for o in self.outcomes)
        with signals_held():
            df, facts = self._write(interrupted)
        if interrupted:
            self.console.print("interrupted: the rows that arrived are written", highlight=False)
            self.console.print(f"results: {self.out}", highlight=False)
            return EXIT_INTERRUPTED
        print_summary(self.console, df, self.out, self.matrix.config, facts)
        return EXIT_OK if all(o.status == "ok" for o in self.outcomes) else EXIT_DRIVER_FAILED

    def _here(self) -> None:
        """Each cell in a fresh process on this machine, one after another."""
        host = platform.node()
        if self.matrix.hosts not in ([ALL_HOSTS], [host]):
            raise ClusterError(f"hosts {', '.join(self.matrix.hosts)}: naming hosts needs --cluster")
        self.hosts[host] = {"machine": machine.machine(), "packages": machine.packages(), "workers": ["process"]}
        self.cluster = {"kind": "none", "isolate": "process"}
        for cell in self.matrix.cells([host]):
            outcome = Outcome(cell, attempts=[{"worker": "process", "started": time.time(), "outcome": None}])
            self.outcomes.append(outcome)
            try:
                outcome.finish(cells.run_in_process(cell, self.matrix.config, self.run_id, "process", argv=self.argv))
            except cells.CellError as exc:
                outcome.status, outcome.reason = "failed", str(exc)
                outcome.attempts[-1]["outcome"] = "failed"
            except KeyboardInterrupt:
                outcome.status, outcome.reason = "cancelled", "run interrupted"
                raise
            if outcome.status == "interrupted":
                return
            if outcome.status != "ok":
                self.warn(f"cell {cell.id}: {outcome.status}: {outcome.reason}")

    def _on_cluster(self) -> None:
        assert self.address is not None
        with cluster.connect(self.address) as (client, record):
            self.cluster = record
            hosts, workers = cluster.survey(client, machine.git_commit(), self.warn)
            picked = cluster.pick_hosts(hosts, self.matrix.hosts)
            record["workers"] = workers
            record["concurrent_on_host"] = any(len(h.workers) > 1 for h in picked)
            if record["concurrent_on_host"]:
                record["note"] = CONCURRENT_NOTE
                self.warn(CONCURRENT_NOTE)
            for h in picked:
                self.hosts[h.name] = {"address": h.address, "workers": h.workers, **h.facts}
            runner = cluster.ClusterCells(client, picked, self.warn)
            try:
                self.outcomes = runner.run(self.matrix.cells([h.name for h in picked]), self.matrix.config, self.run_id)
            finally:
                self.outcomes = list(runner.outcomes.values())
                self.faults = runner.faults

    def _write(self, interrupted: bool) -> tuple[pd.DataFrame, dict[str, object]]:
        frames = [o.result.rows for o in self.outcomes if o.result is not None and len(o.result.rows)]
        df = pd.concat(frames, ignore_index=True).astype(results.COLUMNS) if frames else results.frame([])
        facts = statistics(summary(df), self.matrix.config)
        results.write_frame(self.out, df, self.run_json(interrupted, facts))
        return df, facts

    def run_json(self, interrupted: bool, facts: dict[str, object]) -> dict[str, object]:
        """The record of the whole matrix: the client's facts, each host's, each cell's."""
        one_host = next(iter(self.hosts.values())) if len(self.hosts) == 1 else {}
        workloads = {o.cell["workload"]: o.result.part.get("workload") for o in self.outcomes if o.result is not None}
        return {
            **run_header(self.run_id, self.argv, self.started, interrupted),
            # one host: its machine, so `bench compare` checks it as for any run; several: the client's
            "machine": one_host.get("machine") or machine.machine(),
            "packages": one_host.get("packages") or machine.packages(),
            "config": self.matrix.config.facts(),
            "matrix": self.matrix.facts(),
            "cluster": self.cluster,
            "hosts": self.hosts,
            "cells": [o.facts() for o in self.outcomes],
            "faults": self.faults,
            "drivers": merged_drivers(self.outcomes, several_hosts=len(self.hosts) > 1),
            "workload": next(iter(workloads.values())) if len(workloads) == 1 else None,
            "workloads": workloads,
            "warnings": self.warnings
            + [f"cell {o.cell.id}: {w}" for o in self.outcomes if o.result for w in o.result.part.get("warnings", [])],
            "repetitions": [r for o in self.outcomes if o.result for r in o.result.part.get("repetitions", [])],
            "statistics": facts,
        }


def merged_drivers(outcomes: list[Outcome], *, several_hosts: bool) -> dict[str, dict[str, object]]:
    """run.json's `drivers` over all cells (`driver@host` with several hosts): the worst status
    of its cells and all their errors, each prefixed with its cell."""
    merged: dict[str, dict[str, object]] = {}
    rank = {"ok": 0, "partial": 1, "failed": 2}
    for o in outcomes:
        name = o.cell["driver"] + (f"@{o.cell['host']}" if several_hosts else "")
        drivers = o.result.part.get("drivers", {}) if o.result else {}
        record = drivers.get(o.cell["driver"]) or {"status": "failed", "errors": [o.reason or o.status]}
        if name not in merged:
            merged[name] = {**record, "errors": [], "cells": []}
        mine = merged[name]
        if rank.get(str(record.get("status")), 2) > rank.get(str(mine["status"]), 2):
            mine["status"] = record["status"]
        mine["errors"] += [f"{o.cell.id}: {e}" for e in record.get("errors", [])]  # type: ignore[operator]
        mine["cells"].append(o.cell.id)  # type: ignore[attr-defined]
    return merged

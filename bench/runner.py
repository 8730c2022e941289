"""`bench run`: every driver on its own backing filesystem, every scenario, results.

All drivers are set up first; each scenario then runs on all of them interleaved, one
repetition per driver in turn, so a burst of load from elsewhere on the machine does not
fall on one driver only. Isolation rules: a driver that cannot be built, or a scenario
that fails, is recorded in run.json and warned about, and the run goes on with the rest. Ctrl-C (SIGINT) or SIGTERM
stops the run, tears down what is mounted (with the signals held off during teardown so
a second Ctrl-C cannot interrupt it), writes the rows gathered so far, and exits 130.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import graphdrivers

from . import environment, floors, machine, order, results, variants, workloads
from .config import RunConfig
from .peers.hooks import Peers
from .results import FLOOR, Row
from .rounds import Rounds
from .sandbox import Sandbox, backend_of, cells
from .scenarios import SCENARIOS, Context, layer_create, rootfs, steps_per_driver
from .scenarios import exec as exec_scenario
from .scenarios import io as io_scenario
from .scenarios import pull as pull_scenario
from .stats import CONFIDENCE
from .table import rich_table, start_shares, summary, write_summaries

SCENARIO_RUNNERS: dict[str, Callable[[Context], Iterator[None]]] = {
    "layer-create": layer_create.run,
    "rootfs": rootfs.run,
    "exec": exec_scenario.run,
    "io": io_scenario.run,
    "pull": pull_scenario.run,
}
assert tuple(SCENARIO_RUNNERS) == SCENARIOS

EXIT_OK, EXIT_DRIVER_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class _Open:
    """A driver that started, with its sandbox and its run.json record."""

    name: str
    sandbox: Sandbox
    driver: graphdrivers.Driver
    backend: str
    record: dict[str, object]
    options: str = ""  # the `options` column of its rows


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM off during teardown; a pending one is delivered afterwards."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _shrink(progress: Progress, task: TaskID, planned_but_skipped: int) -> None:
    """A phase ended before its planned maximum: count it out of the total, so the ETA holds."""
    if planned_but_skipped:
        total = next(t.total for t in progress.tasks if t.id == task) or 0
        progress.update(task, total=total - planned_but_skipped)


def expand_drivers(names: list[str]) -> list[str]:
    if "all" in names:
        return graphdrivers.registered()
    return list(dict.fromkeys(names))


def _rounded(value: float) -> float | None:
    """A figure for run.json: None where there is none or it is unbounded (a one-value group)."""
    return None if pd.isna(value) or not math.isfinite(value) else round(float(value), 4)


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


class Run:
    def __init__(
        self,
        config: RunConfig,
        argv: list[str],
        console: Console | None = None,
        *,
        run_id: str | None = None,
        worker: str = "local",
    ) -> None:
        """`run_id` and `worker` are given when this run is one cell of a matrix (bench.cells)."""
        self.config = config
        self.argv = argv
        self.console = console or Console(stderr=True)
        if config.cpus:
            environment.pin(set(config.cpus))
        self.run_id = run_id or new_run_id()
        self.host = platform.node()
        self.worker = worker
        self.rows: list[Row] = []
        self.warnings: list[str] = []
        self.drivers: dict[str, dict[str, object]] = {}
        self.peers = Peers(self.run_id, config, self.warn)
        self.facts: dict[str, object] = {}
        self.phases: list[dict[str, object]] = []
        self.started = time.time()
        self.out = config.out or os.path.join("results", self.run_id.split("-")[0])

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)

    def execute(self) -> int:
        old_term = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        scratch = self.config.scratch or tempfile.mkdtemp(prefix="strata-bench-")
        os.makedirs(scratch, exist_ok=True)
        interrupted = False
        try:  # a workload that cannot be built is a usage error: no result directory
            workload = workloads.build(
                self.config.workload,
                os.path.join(scratch, "workload"),
                quick=self.config.quick,
                depth=self.config.depth,
                image=self.config.image,
            )
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            signal.signal(signal.SIGTERM, old_term)
            raise
        self.facts["workload"] = workload.facts()
        try:
            if "pull" in self.config.scenarios:
                self.peers.pull_source = pull_scenario.PullSource.start(workload, os.path.join(scratch, "pull"))
                self.facts["pull"] = self.peers.pull_source.facts()
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),  # with --repeat auto: until the max-repeat bound, shrinks as phases end
                console=self.console,
                transient=False,
            ) as progress:
                self._drivers(workload, scratch, progress)
        except KeyboardInterrupt:
            interrupted = True
            self.warn("interrupted: everything mounted was torn down; rows so far are written")
        finally:
            with signals_held():
                self.peers.close_registry()
                shutil.rmtree(scratch, ignore_errors=True)
                self._write(interrupted)
            signal.signal(signal.SIGTERM, old_term)
        if interrupted:
            return EXIT_INTERRUPTED
        self._print_table()
        failed = [n for n, d in [*self.drivers.items(), *self.peers.records.items()] if d["status"] == "failed"]
        failed += [n for n, d in self.drivers.items() if d["status"] == "partial"]
        return EXIT_DRIVER_FAILED if failed else EXIT_OK

    def _drivers(self, workload: workloads.Workload, scratch: str, progress: Progress) -> None:
        """Open every driver, run each scenario on all of them interleaved, close them all."""
        opened: list[_Open] = []
        several_fs = bool(self.config.backing_fs)
        try:
            for text, fstype in cells(expand_drivers(self.config.drivers), self.config.backing_fs):
                spec = variants.parse(text)
                name = spec.name
                key = f"{spec.label}@{fstype}" if several_fs else spec.label
                options = spec.storage_opts(self.config.storage_opts)
                record: dict[str, object] = {"status": "ok", "errors": [], "driver": name, "options": options}
                self.drivers[key] = record
                sandbox = Sandbox(
                    name,
                    scratch,
                    self.config.backing,
                    self.run_id,
                    options=options,
                    fstype=fstype if self.config.backing == "loop" else None,
                    slug=spec.slug,
                )
                try:
                    driver = sandbox.open()
                    status = driver.status()  # aufs mounts a FUSE probe here
                except BaseException as exc:
                    with signals_held():  # not yet in `opened`: close it here, Ctrl-C included
                        sandbox.close()
                    if not isinstance(exc, Exception):
                        raise
                    if several_fs and isinstance(exc, graphdrivers.errors.DriverNotSupported):
                        record.update(status="unsupported", reason=str(exc))
                        self.warn(f"driver {name} does not run on {fstype} and is left out there: {exc}")
                        continue
                    record["status"] = "failed"
                    record["errors"].append(f"setup: {type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
                    self.warn(f"driver {key} failed to start and is left out: {exc}")
                    continue
                backend = backend_of(status, name)
                record.update(status_rows=[list(r) for r in status], backend=backend, backing=sandbox.facts())
                opened.append(_Open(key, sandbox, driver, backend, record, variants.text(name, options)))
            for o in opened:
                self.rows += self.peers.start(o.name, o.sandbox, workload.name)
            for scenario in self.config.scenarios:
                self._interleave(scenario, opened, workload, scratch, progress)
        finally:
            with signals_held():
                self.peers.close()
                for o in opened:
                    try:
                        o.sandbox.close()
                    except Exception as exc:
                        self._fail(o, "teardown", exc)
            for o in opened:
                fstype = o.sandbox.backing_fs
                mine = (
                    r
                    for r in self.rows
                    if (r.driver, r.backing_fs, r.options) == (o.driver.name, fstype, o.options)
                )
                if o.record["status"] == "partial" and not any(mine):
                    o.record["status"] = "failed"

    def _interleave(
        self, scenario: str, opened: list[_Open], workload: workloads.Workload, scratch: str, progress: Progress
    ) -> None:
        """One repetition per driver in turn, so load from the rest of the machine falls on
        every driver alike; a driver whose scenario fails drops out, the others go on."""
        running: dict[str, tuple[Callable[[Exception], None], Iterator[None]]] = {}
        contexts: list[Context] = []
        rounds = Rounds(self.config)

        def join(label: str, ctx: Context, steps: Iterator[None], fail: Callable[[Exception], None]) -> None:
            rounds.watch(ctx.rows)
            contexts.append(ctx)
            running[label] = (fail, steps)

        for o in opened:
            description = escape(f"{o.name:<10} {scenario:<12}")  # a variant's label has brackets
            task = progress.add_task(description, total=steps_per_driver(self.config, scenario))

            def context(
                system: str = "strata",
                backend: str = o.backend,
                o: _Open = o,
                task: TaskID = task,
                counted: bool = False,
            ) -> Context:
                """A context on `o`'s sandbox; only the driver's own scenario moves its progress bar."""
                ctx = Context(
                    self.run_id,
                    self.config,
                    o.sandbox,
                    o.driver,
                    backend,
                    workload,
                    os.path.join(scratch, "workload"),
                    rounds=rounds,
                    advance=lambda t=task: progress.advance(t) if counted else None,
                    skip=lambda n, t=task: _shrink(progress, t, n) if counted else None,
                    system=system,
                    error=lambda message, o=o: o.record["errors"].append(message),  # type: ignore[attr-defined]
                    options=o.options,
                )
                if self.peers.pull_source is not None:
                    ctx.pull_source = self.peers.pull_source.reference
                    ctx.pull = self.peers.pull_source
                return ctx

            ctx = context(counted=True)
            join(o.name, ctx, SCENARIO_RUNNERS[scenario](ctx), lambda exc, o=o: self._fail(o, scenario, exc))
            if self.config.floors and scenario in floors.FLOORS:
                ctx = context(FLOOR, floors.backend(scenario, o.driver.name))
                join(f"floor/{o.name}", ctx, floors.FLOORS[scenario](ctx), lambda exc, o=o: self._floor_failed(o, exc))
            for label, peer, steps in self.peers.participants(scenario, o.name, o.sandbox):
                ctx = context(peer.system, getattr(peer, "storage_driver", o.backend))
                join(label, ctx, steps(ctx, peer), lambda exc, label=label: self.peers.fail(label, scenario, exc))
        try:
            turn = 0
            while running:  # each pass visits the participants in the order drawn for it
                config = self.config
                visit = order.visit(list(running), order=config.order, seed=config.seed, what="drivers", round_=turn)
                turn += 1
                for name in visit:
                    fail, steps = running[name]
                    try:
                        next(steps)
                    except StopIteration:
                        del running[name]
                    except Exception as exc:
                        del running[name]
                        fail(exc)
        finally:
            for _, steps in running.values():  # interrupted: release what they hold
                steps.close()  # type: ignore[attr-defined]
            for ctx in contexts:
                self.rows.extend(ctx.rows)
                for message in ctx.warnings:
                    self.warn(message)
                self.facts.update(ctx.facts)  # execdrivers, io: the same for every driver
            self.phases += [{"scenario": scenario, **phase} for phase in rounds.facts()]

    def _fail(self, o: _Open, what: str, exc: Exception) -> None:
        o.record["status"] = "failed" if what == "teardown" else "partial"
        o.record["errors"].append(f"{what}: {type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
        o.record.setdefault("tracebacks", []).append(  # type: ignore[attr-defined]
            "".join(traceback.format_exception(exc))
        )
        self.warn(f"driver {o.name}, {what} failed: {type(exc).__name__}: {exc}")

    def _floor_failed(self, o: _Open, exc: Exception) -> None:
        """A floor that cannot be measured is noted; the driver's own rows stand."""
        o.record["errors"].append(f"floor: {type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
        self.warn(f"floor for {o.name} failed: {type(exc).__name__}: {exc}")

    def run_json(self, interrupted: bool) -> dict[str, object]:
        return {
            **run_header(self.run_id, self.argv, self.started, interrupted),
            "machine": machine.machine(),
            "packages": machine.packages(),
            "config": {
                **self.config.facts(),
                "drivers": expand_drivers(self.config.drivers),  # `all` expanded
                "drivers_requested": self.config.drivers,
            },
            "drivers": self.drivers,
            "peers": self.peers.records,
            "warnings": self.warnings,
            "repetitions": self.phases,
            **self.facts,
        }

    def _write(self, interrupted: bool) -> None:
        for row in self.rows:
            row.host, row.worker = self.host, self.worker
        self.facts["statistics"] = statistics(summary(results.frame(self.rows)), self.config)
        results.write(self.out, self.rows, self.run_json(interrupted))

    def _print_table(self) -> None:
        print_summary(self.console, results.frame(self.rows), self.out, self.config, self.facts["statistics"])


def run_header(run_id: str, argv: list[str], started: float, interrupted: bool) -> dict[str, object]:
    """What every run.json begins with: schema, id, command, times, the code's commit."""
    return {
        "schema_version": results.SCHEMA_VERSION,
        "run_id": run_id,
        "command_line": " ".join(argv),
        "argv": argv,
        "started": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "duration_seconds": round(time.time() - started, 3),
        "interrupted": interrupted,
        "git_commit": machine.git_commit(),
    }


def statistics(stats: pd.DataFrame, config: RunConfig) -> dict[str, object]:
    """run.json's `statistics`: how precise the run's medians came out."""
    measured = stats[stats["n"] > 0] if len(stats) else stats
    return {
        "groups": len(stats),
        "measured_groups": len(measured),
        "wide_groups": int(stats["wide"].sum()) if len(stats) else 0,
        "target_ci": config.target_ci if config.adaptive else None,
        "precision_median": _rounded(measured["precision"].median()) if len(measured) else None,
        "precision_worst": _rounded(measured["precision"].max()) if len(measured) else None,
        "groups_above_target": int((measured["precision"] > config.target_ci).sum()) if len(measured) else 0,
        # groups too small for a 95% interval of the median (n < 6): their CI is [min, max] at ci_level
        "groups_below_95": int((measured["ci_level"] < CONFIDENCE).sum()) if len(measured) else 0,
    }


def _share(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.1%}"


def print_summary(console: Console, df: pd.DataFrame, out: str, config: RunConfig, facts: dict) -> None:
    """The closing table on stdout, summary.* in `out`, and the precision and wide-spread notes."""
    stats = summary(df)
    if stats.empty:
        console.print("no measurements were made", style="bold red")
        return
    table = Console(file=sys.stdout, width=max(Console().width, 280))  # every column readable, names whole
    table.print(rich_table(stats))
    write_summaries(stats, out)
    shares = start_shares(df)
    if len(shares):
        table.print("end-to-end start (run_rm_true): the driver's share (create_read_write + get + put + remove); "
                    "medians in ms with n and 95% CI")
        table.print(shares.to_string(index=False), highlight=False)
    if facts["measured_groups"]:
        console.print(
            f"precision (CI width / median): median {_share(facts['precision_median'])}, worst "
            f"{_share(facts['precision_worst'])}; {facts['groups_above_target']} of {facts['measured_groups']} groups "
            f"above {config.target_ci:.0%}"
            + ("" if config.adaptive else " (fixed --repeat; --repeat auto repeats until precise)"),
            highlight=False,
        )
    if facts["groups_below_95"]:
        levels = stats.loc[stats["n"] > 0, "ci_level"]
        console.print(
            f"note: {facts['groups_below_95']} of {facts['measured_groups']} groups have n < 6, too few for a 95% "
            f"CI of the median: their CI is [min, max] at the confidence it reaches (as low as {levels.min():.0%}; "
            "none for n = 1)",
            highlight=False,
        )
    wide = stats[stats["wide"]]
    if len(wide):
        console.print(
            f"[bold yellow]warning:[/] {len(wide)} of {len(stats)} groups have a spread too wide to compare "
            "(95% CI of the median wider than half of it): rerun with more repetitions "
            "(--repeat auto, a larger --max-repeat) on a quieter machine",
            highlight=False,
        )
    console.print(f"results: {out}", highlight=False)

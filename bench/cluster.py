"""Cells on the workers of a Dask distributed scheduler (`bench run --cluster ADDRESS`).

Dask does the scheduling; this module says where each cell may run and what happened to
it. Every worker is surveyed first (hostname, uid, strata's git commit, machine and
packages); a worker that is not root or runs another commit than the client is refused and
never given a cell. Workers are grouped into hosts by the address the scheduler sees, and a
cell may run only on the workers of its host, holding the resource `bench=1`: with one
worker per host (`dask worker --nthreads 1 --resources bench=1`) measurements never
overlap on a machine. `--cluster local:N` starts a scheduler and N such workers on
127.0.0.1 as subprocesses -- one host with N workers, so N cells do run at the same time
there (run.json's `cluster.concurrent_on_host` says so): it tries the whole path.

Faults: each cell reports its start on a worker (a Dask event). A worker that leaves while
running a cell loses that attempt; Dask reschedules the cell on another worker of the same
host, and a second loss (or no worker of the host left) fails it. A cell whose process
fails is recorded with its reason. Ctrl-C sets a Dask Event the running cells poll (they
stop, tear down and return their rows so far), cancels the cells not yet started, and
the run is written with what arrived.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import cells, machine
from .cells import Cell, CellResult
from .config import RunConfig

log = logging.getLogger(__name__)

TOPIC = "strata-bench-cell"  # workers' "a cell started here" events
CONNECT_TIMEOUT = 30.0  # seconds to reach a scheduler, and for a local cluster's workers to join
POLL = 0.5  # seconds between looks at the workers while cells run
STOP_GRACE = 120.0  # seconds running cells get, after Ctrl-C, to tear down and send their rows


class ClusterError(Exception):
    """The cluster cannot run this matrix (unreachable, no usable worker, an unknown host)."""


def parse_address(text: str) -> str:
    """`tcp://HOST:PORT`, `HOST:PORT`, or `local:N` (N >= 1)."""
    if text.startswith("local:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--cluster local:N wants N >= 1 workers, got {text!r}")
        return text
    address = text if "://" in text else f"tcp://{text}"
    if not address.startswith("tcp://") or ":" not in address[len("tcp://") :]:
        raise ValueError(f"--cluster wants tcp://HOST:PORT or local:N, got {text!r}")
    return address


def dask_command(*args: str) -> list[str]:
    """`dask scheduler ...` / `dask worker ...` with this interpreter's dask."""
    return [sys.executable, "-m", "dask", *args]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """A real `dask scheduler` and `workers` x `dask worker --nthreads 1 --resources bench=1`
    on 127.0.0.1, in sessions of their own (a Ctrl-C reaches only the client); all stopped after."""
    directory = tempfile.mkdtemp(prefix="strata-dask-")
    scheduler_file = os.path.join(directory, "scheduler.json")
    procs: list[subprocess.Popen] = []
    with contextlib.ExitStack() as logs:

        def start(name: str, args: list[str]) -> None:
            log_file = logs.enter_context(open(os.path.join(directory, f"{name}.log"), "wb"))
            procs.append(
                subprocess.Popen(
                    dask_command(*args),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=cells.child_env(),
                    start_new_session=True,
                )
            )

        try:
            start(
                "scheduler",
                [
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    scheduler_file,
                ],
            )
            for i in range(workers):
                start(f"worker-{i}", worker_args(scheduler_file, f"local-{i}", directory))
            yield _wait_for_scheduler(scheduler_file, procs[0])
        finally:
            _stop(procs[1:])
            _stop(procs[:1])
            shutil.rmtree(directory, ignore_errors=True)


def worker_args(scheduler: str, name: str, directory: str) -> list[str]:
    """The documented way to start a bench worker: one thread, one `bench` slot, no nanny
    (a dead worker stays dead: the client sees the loss and retries the cell elsewhere)."""
    where = ["--scheduler-file", scheduler] if not scheduler.startswith("tcp://") else [scheduler]
    return [
        "worker",
        *where,
        "--name",
        name,
        "--nthreads",
        "1",
        "--resources",
        "bench=1",
        "--no-nanny",
        "--no-dashboard",
        "--local-directory",
        directory,
    ]


def _wait_for_scheduler(scheduler_file: str, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"the local dask scheduler exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            with open(scheduler_file) as f:
                return json.load(f)["address"]
        time.sleep(0.2)
    raise ClusterError(f"the local dask scheduler wrote no {scheduler_file} within {CONNECT_TIMEOUT:.0f} s")


def worker_facts() -> dict[str, object]:
    """Run on every worker: what the client checks (root, commit) and run.json records."""
    import platform

    return {
        "hostname": platform.node(),
        "uid": os.geteuid(),
        "git_commit": machine.git_commit(),
        "machine": machine.machine(),
        "packages": machine.packages(),
    }


def refusal(facts: dict[str, object], commit: str) -> str:
    """Why a worker cannot take cells, or ''."""
    if facts.get("uid") != 0:
        return f"runs as uid {facts.get('uid')}, not root (cells mount filesystems)"
    if facts.get("git_commit") != commit:
        return f"strata commit {facts.get('git_commit')} differs from the client's {commit}"
    return ""


def run_cell_task(cell: Cell, base: RunConfig, run_id: str, stop_name: str) -> CellResult | None:
    """The Dask task: announce the start, run the cell in a fresh process, return its rows.
    None when the run was stopped before this cell began."""
    from distributed import Event, get_worker

    worker = get_worker()
    stop = Event(stop_name)
    if stop.is_set():
        return None
    worker.log_event(TOPIC, {"cell": cell.id, "worker": worker.address, "run_id": run_id})
    return cells.run_in_process(cell, base, run_id, worker.address, stop=stop.is_set)


@dataclass
class Host:
    """The workers the scheduler sees at one address: one machine."""

    address: str  # the host part of the workers' addresses
    name: str  # its hostname
    workers: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)


@dataclass
class Outcome:
    """What happened to one cell: its status, why, each attempt, and its result if any."""

    cell: Cell
    status: str = "pending"  # ok, partial, failed, interrupted, cancelled
    reason: str = ""
    attempts: list[dict[str, object]] = field(default_factory=list)
    result: CellResult | None = None

    def facts(self) -> dict[str, object]:
        worker = self.result.worker if self.result else (self.attempts[-1]["worker"] if self.attempts else "")
        return {
            "cell": self.cell.id,
            "dimensions": dict(self.cell.dimensions),
            "status": self.status,
            "reason": self.reason,
            "worker": worker,
            "attempts": self.attempts,
            "exit_code": self.result.exit_code if self.result else None,
            "run": cells.part_of(self.result) if self.result else {},
        }

    def finish(self, result: CellResult | None) -> None:
        self.result = result
        if result is None:
            self.status, self.reason = "cancelled", self.reason or "stopped before it began"
            return
        self.status, self.reason = result.status, result.reason
        if self.attempts:
            self.attempts[-1]["outcome"] = self.status


def live_workers(client) -> dict[str, dict]:
    """The scheduler's workers now, asked afresh (Client.scheduler_info's cache is refreshed
    in the background without per-worker entries, so it can look empty)."""
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


def survey(client, commit: str, warn: Callable[[str], None]) -> tuple[dict[str, Host], dict[str, dict]]:
    """Hosts of usable workers, and every worker's record (refused ones with the reason)."""
    info = live_workers(client)
    if not info:
        raise ClusterError("the scheduler has no workers")
    facts = client.run(worker_facts)
    hosts: dict[str, Host] = {}
    workers: dict[str, dict] = {}
    for address, w in sorted(info.items()):
        f = facts.get(address, {})
        why = refusal(f, commit) if f else "did not answer the survey"
        workers[address] = {"host": w["host"], "hostname": f.get("hostname"), "name": w.get("name"), "refused": why}
        if why:
            warn(f"worker {address} refused: {why}")
            continue
        host = hosts.setdefault(w["host"], Host(w["host"], str(f["hostname"])))
        host.workers.append(address)
        host.facts = {k: f[k] for k in ("machine", "packages", "git_commit")}
    if not hosts:
        raise ClusterError("no usable worker: " + "; ".join(f"{a}: {w['refused']}" for a, w in workers.items()))
    return hosts, workers


def pick_hosts(hosts: dict[str, Host], wanted: list[str]) -> list[Host]:
    """The hosts a matrix names (by hostname or address), or all of them."""
    from .matrix import ALL_HOSTS

    if wanted == [ALL_HOSTS]:
        return list(hosts.values())
    picked = []
    for name in wanted:
        found = [h for h in hosts.values() if name in (h.name, h.address)]
        if not found:
            known = ", ".join(f"{h.name} ({h.address})" for h in hosts.values())
            raise ClusterError(f"host {name}: no usable worker there (hosts: {known})")
        picked += [h for h in found if h not in picked]
    return picked


class ClusterCells:
    """Submit cells to their hosts' workers and follow them to an Outcome each."""

    def __init__(self, client, hosts: list[Host], warn: Callable[[str], None]) -> None:
        self.client = client
        self.hosts = {h.name: h for h in hosts}
        self.warn = warn
        self.outcomes: dict[str, Outcome] = {}
        self.futures: dict[str, object] = {}
        self.faults: list[dict[str, object]] = []
        self.lock = threading.Lock()

    def _started(self, event: tuple[float, dict]) -> None:
        _, msg = event
        with self.lock:
            outcome = self.outcomes.get(msg.get("cell"))
            if outcome is not None:
                outcome.attempts.append({"worker": msg["worker"], "started": time.time(), "outcome": None})

    def run(self, cell_list: list[Cell], base: RunConfig, run_id: str) -> list[Outcome]:
        from distributed import Event, wait

        stop_name = f"strata-bench-stop-{run_id}"
        self.client.subscribe_topic(TOPIC, self._started)
        for cell in cell_list:
            host = self.hosts[cell["host"]]
            self.outcomes[cell.id] = Outcome(cell)
            self.futures[cell.id] = self.client.submit(
                run_cell_task,
                cell,
                base,
                run_id,
                stop_name,
                key=f"cell-{run_id}-{cell.id}",
                workers=host.workers,
                allow_other_workers=False,
                resources={"bench": 1},
                pure=False,
            )
        alive = set(live_workers(self.client))
        try:
            while self._pending():
                with contextlib.suppress(TimeoutError):  # none finished within POLL: look at the workers
                    wait([self.futures[k] for k in self._pending()], timeout=POLL, return_when="FIRST_COMPLETED")
                self._collect()
                alive = self._check_workers(alive)
        except KeyboardInterrupt:
            self.warn("interrupted: cancelling the cells not started; running cells stop and send their rows")
            Event(stop_name).set()
            self._stop_all()
            raise
        return list(self.outcomes.values())

    def _pending(self) -> list[str]:
        return [k for k, o in self.outcomes.items() if o.status == "pending"]

    def _collect(self) -> None:
        for key in self._pending():
            future = self.futures[key]
            if not future.done():
                continue
            outcome = self.outcomes[key]
            try:
                outcome.finish(future.result())
            except Exception as exc:  # the cell's process could not run, or Dask gave up on it
                outcome.status, outcome.reason = "failed", f"{type(exc).__name__}: {exc}"
                if outcome.attempts:
                    outcome.attempts[-1]["outcome"] = "failed"
            if outcome.status != "ok":
                self.warn(f"cell {key}: {outcome.status}" + (f": {outcome.reason}" if outcome.reason else ""))

    def _fail(self, key: str, reason: str) -> None:
        outcome = self.outcomes[key]
        self.client.cancel([self.futures[key]], force=True)
        outcome.status, outcome.reason = "failed", reason
        self.warn(f"cell {key}: failed: {reason}")

    def _check_workers(self, before: set[str]) -> set[str]:
        """Record lost attempts; fail cells lost twice or left with no worker of their host.
        (Attempts are read under the lock the event handler takes; cancelling, a call into
        the client's event loop, happens outside it.)"""
        now = set(live_workers(self.client))
        lost = before - now
        failing: list[tuple[str, str]] = []
        with self.lock:
            for key in self._pending():
                outcome = self.outcomes[key]
                host = self.hosts[outcome.cell["host"]]
                running = [a for a in outcome.attempts if a["outcome"] is None and a["worker"] in lost]
                for attempt in running:
                    attempt["outcome"] = "worker lost"
                    reason = f"worker {attempt['worker']} died while running the cell"
                    self.faults.append({"host": host.name, "worker": attempt["worker"], "cell": key, "reason": reason})
                    self.warn(f"cell {key}: {reason}")
                losses = sum(a["outcome"] == "worker lost" for a in outcome.attempts)
                if losses >= 2:
                    failing.append((key, f"its worker died on the retry too ({losses} workers lost)"))
                elif not [w for w in host.workers if w in now]:
                    again = " again" if losses else ""
                    failing.append((key, f"no worker of host {host.name} left to run it{again}"))
                elif running:
                    self.warn(f"cell {key}: retried once on another worker of {host.name}")
        for key, reason in failing:
            self._fail(key, reason)
        return now

    def _stop_all(self) -> None:
        """After Ctrl-C: cancel cells not started, wait a while for the running ones' rows."""
        with self.lock:
            unstarted = [k for k in self._pending() if not self.outcomes[k].attempts]
            for key in unstarted:
                self.outcomes[key].status, self.outcomes[key].reason = "cancelled", "run interrupted"
        self.client.cancel([self.futures[k] for k in unstarted], force=True)
        deadline = time.monotonic() + STOP_GRACE
        try:
            while self._pending() and time.monotonic() < deadline:
                time.sleep(POLL)
                self._collect()
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: write what arrived now
        for key in self._pending():
            self.outcomes[key].status, self.outcomes[key].reason = "cancelled", "run interrupted while it ran"


@contextlib.contextmanager
def connect(address: str) -> Iterator[tuple[object, dict[str, object]]]:
    """A Client to `address` (starting a local cluster for local:N) and the cluster's record."""
    from distributed import Client

    with contextlib.ExitStack() as stack:
        record: dict[str, object] = {"address": address}
        if address.startswith("local:"):
            count = int(address.split(":", 1)[1])
            record.update(kind="local", started_workers=count)
            scheduler = stack.enter_context(local_cluster(count))
            record["scheduler"] = scheduler
            client = stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT))
            client.wait_for_workers(count, timeout=CONNECT_TIMEOUT)
        else:
            record["kind"] = "tcp"
            try:
                client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT))
            except OSError as exc:
                raise ClusterError(f"--cluster {address}: {exc}") from None
        yield client, record

"""The runner's view of peers: start them per driver, hand out their scenario steps,
record what failed, and tear everything down (peers, then the loopback registry).

Each `--peer` is started once per strata driver of the run, with its data root on that
driver's backing filesystem. A pairing the peer cannot do (no storage driver of that
kind) is a warning and an `errors` entry with status `unsupported`; a peer that fails to
start is a warning, status `failed`, and one row per step it would have measured whose
`note` says why (no number) -- the run goes on with the rest.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator

from ..config import RunConfig
from ..results import Row
from ..sandbox import Sandbox
from ..scenarios.pull import PullSource
from . import Peer, PeerFailed, PeerUnavailable, make
from .steps import PEER_EXEC_STEPS, STEPS
from .strata import StrataEngine

log = logging.getLogger(__name__)

Steps = Callable[..., Iterator[None]]


class Peers:
    def __init__(self, run_id: str, config: RunConfig, warn: Callable[[str], None]) -> None:
        self.run_id = run_id
        self.config = config
        self.warn = warn
        self.records: dict[str, dict[str, object]] = {}  # "dockerd/overlay2" -> status, system, errors
        self.running: dict[str, list[Peer]] = {}  # strata driver -> its started peers
        self.engines: list[StrataEngine] = []
        self.pull_source: PullSource | None = None

    def start(self, driver: str, sandbox: Sandbox, workload: str) -> list[Row]:
        """Start every --peer for `driver`, beside its sandbox root; error rows for those
        that could not start."""
        rows: list[Row] = []
        registry = self.pull_source.server.host if self.pull_source else None
        for name in self.config.peers:
            label = f"{name}/{driver}"
            record: dict[str, object] = {"status": "ok", "errors": []}
            self.records[label] = record
            try:
                peer = make(name, driver, f"{sandbox.root}-{name}", registry)
            except PeerUnavailable as exc:
                record.update(status="unsupported", errors=[str(exc)])
                self.warn(f"peer {label} left out: {exc}")
                continue
            try:
                peer.start()
            except BaseException as exc:
                peer.close()  # Ctrl-C too: a daemon in its own session would not get it and stay
                if not isinstance(exc, Exception):
                    raise
                reason = exc if isinstance(exc, PeerFailed) else f"{type(exc).__name__}: {exc}"
                record.update(status="failed", errors=[f"start: {reason}"])
                self.warn(f"peer {label} failed to start and is left out: {reason}")
                note = f"unavailable: {name} could not start: {reason}"
                rows += self._error_rows(name, driver, sandbox, workload, note)
                continue
            record.update(system=peer.system, storage_driver=peer.storage_driver, data_root=peer.data_dir,
                          run_dir=peer.run_dir)
            self.running.setdefault(driver, []).append(peer)
        return rows

    def _error_rows(self, name: str, driver: str, sandbox: Sandbox, workload: str, note: str) -> list[Row]:
        """One row per step the peer would have measured: no number, the reason in `note`."""
        steps = {"exec": PEER_EXEC_STEPS, "pull": ("pull",)}
        return [
            Row(self.run_id, driver, "", sandbox.backing_fs, scenario, step, workload, system=name,
                cache="cold" if scenario == "pull" else self.config.cache_modes[0], note=note)
            for scenario in self.config.scenarios if scenario in steps
            for step in steps[scenario]
        ]  # fmt: skip

    def participants(self, scenario: str, driver: str, sandbox: Sandbox) -> Iterator[tuple[str, object, Steps]]:
        """(label, peer, steps) for each peer of `driver` that measures `scenario`; with
        peers in the run, strata's Engine joins the exec scenario for the paired steps."""
        if scenario not in STEPS:
            return
        peers = self.running.get(driver, [])
        if scenario == "exec" and self.config.peers:
            engine = StrataEngine(driver, f"{sandbox.root}-engine-exec", sandbox.options)
            self.engines.append(engine)
            yield f"strata-engine/{driver}", engine, STEPS["exec"]
        for peer in peers:
            yield f"{peer.name}/{driver}", peer, STEPS[scenario]

    def fail(self, label: str, scenario: str, exc: Exception) -> None:
        record = self.records.setdefault(label, {"status": "ok", "errors": []})
        record["status"] = "partial"
        record["errors"].append(f"{scenario}: {type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
        record.setdefault("tracebacks", []).append("".join(traceback.format_exception(exc)))  # type: ignore[attr-defined]
        self.warn(f"{label}, {scenario} failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Stop every peer and strata engine; a teardown error is recorded, never raised."""
        for engine in self.engines:
            try:
                engine.close()
            except Exception as exc:
                self.warn(f"strata engine teardown failed: {exc}")
        self.engines.clear()
        for driver, peers in self.running.items():
            for peer in peers:
                try:
                    peer.close()
                except Exception as exc:
                    self.fail(f"{peer.name}/{driver}", "teardown", exc)
        self.running.clear()

    def close_registry(self) -> None:
        if self.pull_source is not None:
            self.pull_source.close()
            self.pull_source = None




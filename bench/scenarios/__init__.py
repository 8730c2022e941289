"""The scenarios of `bench run`, and the context and repetition loop they share.

Each scenario runs `warmup` unrecorded repetitions and then recorded ones per cache mode
(as many as the shared `Rounds` decides: `repeat`, or until precise), every repetition on
fresh layers, and appends tidy rows to `ctx.rows`. A
scenario is a generator that yields after each repetition (with nothing of that
repetition left mounted), so the runner can interleave drivers repetition by repetition.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import graphdrivers
from graphdrivers.whiteouts import OPAQUE
from graphdrivers.whiteouts import PREFIX as WHITEOUT

from .. import cache
from ..config import RunConfig
from ..results import STRATA, Row
from ..rounds import Rounds
from ..sandbox import Sandbox
from ..workloads import Workload

SCENARIOS = ("layer-create", "rootfs", "exec", "io", "pull")
DEFAULT_SCENARIOS = ("layer-create", "rootfs", "exec")  # io (12 fio jobs a repetition) and pull run when named

clock = time.perf_counter


@dataclass
class Context:
    run_id: str
    config: RunConfig
    sandbox: Sandbox
    driver: graphdrivers.Driver
    backend: str
    workload: Workload
    workdir: str
    rounds: Rounds | None = None  # None: exactly config.repeat rounds (nothing shared)
    advance: Callable[[], None] = lambda: None
    skip: Callable[[int], None] = lambda n: None  # planned repetitions a phase did not need
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    system: str = STRATA  # a peer's context names the peer ("dockerd 20.10.24"), a floor's "floor"
    pull_source: str = ""  # the pull scenario's reference in the run's loopback registry

    def row(self, scenario: str, step: str, **values: object) -> Row:
        row = Row(
            run_id=self.run_id,
            system=self.system,
            driver=self.driver.name,
            backend=self.backend,
            backing_fs=self.sandbox.backing_fs,
            scenario=scenario,
            step=step,
            workload=self.workload.name,
            **values,  # type: ignore[arg-type]
        )
        self.rows.append(row)
        return row


@dataclass(frozen=True)
class Repetition:
    cache: str
    index: int  # 0.. for measured repetitions, negative for warm-ups
    measured: bool
    cache_dropped: bool = False
    page_cache_bytes: int | None = None

    def columns(self) -> dict[str, object]:
        return {
            "cache": self.cache,
            "repetition": self.index,
            "cache_dropped": self.cache_dropped,
            "page_cache_bytes": self.page_cache_bytes,
        }


def repetitions(ctx: Context, depth: int | None = None) -> Iterator[Repetition]:
    """Warm-ups then measured repetitions for every cache mode; cold ones drop caches first.

    Call this generator's next step only when the repetition's setup is done: the page
    cache is dropped right before a cold repetition is handed out. `depth` names the phase
    of a scenario that sweeps depths, so precision is judged per depth.
    """
    rounds = ctx.rounds or Rounds(ctx.config)
    for mode in ctx.config.cache_modes:
        for w in range(ctx.config.warmup):
            yield Repetition(mode, -(w + 1), measured=False)
            ctx.advance()
        i = 0
        while rounds.more((mode, depth), i):
            dropped = False
            if mode == "cold":
                cache.drop()
                dropped = True
            yield Repetition(mode, i, True, dropped, cache.page_cache_bytes())
            ctx.advance()
            i += 1
        ctx.skip(max(ctx.config.planned_repeat - i, 0))


def steps_per_driver(config: RunConfig, scenario: str) -> int:
    """Repetitions a scenario runs on one driver at most (for progress bars)."""
    if scenario == "io":  # always cold, one step per fio job
        from .io import JOBS_PER_REPETITION

        return (config.warmup + config.planned_repeat) * JOBS_PER_REPETITION
    per = (config.warmup + config.planned_repeat) * len(config.cache_modes)
    return per * len(config.depths) if scenario == "rootfs" else per




def _deleted_by(tar_path: str) -> list[str]:
    """Paths a layer tar deletes from below: whiteout targets and opaque directories."""
    deleted = []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            head, _, name = member.name.strip("./").rpartition("/")
            if name == OPAQUE:
                deleted.append(head)
            elif name.startswith(WHITEOUT):
                deleted.append(f"{head}/{name[len(WHITEOUT) :]}" if head else name[len(WHITEOUT) :])
    return deleted


def bottom_file(stack: list[str]) -> str:
    """A regular file of the bottom layer that is still visible at the top of `stack` (layer
    tars, bottom first): the file the scenarios read to prove a rootfs is usable."""
    deleted = [path for tar_path in stack[1:] for path in _deleted_by(tar_path)]
    with tarfile.open(stack[0]) as tar:
        for member in tar:
            name = member.name.strip("./")
            if not member.isreg() or name.rsplit("/", 1)[-1].startswith(WHITEOUT):
                continue
            if not any(name == d or name.startswith(d.rstrip("/") + "/") or not d for d in deleted):
                return name
    raise ValueError(f"no file of {stack[0]} survives the layers above it")

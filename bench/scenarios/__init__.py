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
from typing import TYPE_CHECKING

import graphdrivers
from graphdrivers.whiteouts import OPAQUE
from graphdrivers.whiteouts import PREFIX as WHITEOUT

from .. import cache, environment, order
from ..config import RunConfig
from ..results import STRATA, Row
from ..rounds import Rounds
from ..sandbox import Sandbox
from ..workloads import Workload

if TYPE_CHECKING:
    from .pull import PullSource

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
    pull: PullSource | None = None  # that registry and its images (the pull scenario's lazy steps)
    error: Callable[[str], None] = lambda message: None  # an entry in the driver's run.json `errors`
    options: str = ""  # the driver's options (`options` column): tells a variant's rows apart

    def row(self, scenario: str, step: str, **values: object) -> Row:
        row = Row(
            run_id=self.run_id,
            system=self.system,
            driver=self.driver.name,
            options=self.options,
            backend=self.backend,
            backing_fs=self.sandbox.backing_fs,
            scenario=scenario,
            step=step,
            workload=self.workload.name,
            **values,  # type: ignore[arg-type]
        )
        self.rows.append(row)
        return row


@dataclass
class Repetition:
    cache: str
    index: int  # 0.. for measured repetitions, negative for warm-ups and re-warms
    measured: bool
    cache_dropped: bool = False
    page_cache_bytes: int | None = None

    def start(self) -> None:
        """The moment the measured data must be cold: a cold repetition drops the page
        cache here. Scenarios call it once the setup that would re-warm the data (creating
        and mounting a container layer, which copies files on vfs) is done."""
        if self.cache == "cold":
            cache.drop()
            self.cache_dropped = True
        self.page_cache_bytes = cache.page_cache_bytes()

    def columns(self) -> dict[str, object]:
        return {
            "cache": self.cache,
            "repetition": self.index,
            "cache_dropped": self.cache_dropped,
            "page_cache_bytes": self.page_cache_bytes,
        }


Phase = tuple[str, int | None]  # (cache mode, depth or None)


def phases(config: RunConfig, depths: tuple[int, ...] | None = None) -> list[Phase]:
    """A scenario's phases: every cache mode (x every depth, for a depth sweep)."""
    return [(mode, depth) for mode in config.cache_modes for depth in (depths or (None,))]


def phased(ctx: Context, scenario: str, todo: list[Phase], body: Callable[[Phase, Repetition], None]) -> Iterator[None]:
    """Warm-ups, then rounds of measured repetitions over the phases `todo`, yielding after
    each repetition (with nothing of it left mounted) so the runner can interleave drivers.

    Each round visits the phases still running in the order `bench.order` draws for it (the
    same for every driver); `body(phase, rep)` measures one repetition and records rows
    when `rep.measured`, calling `rep.start()` where the data must be cold. A warm
    repetition is only warm if nothing dropped the page cache since this phase last ran
    (another driver's or phase's cold repetition, or the io scenario), so then the body
    first runs once unrecorded, in the same turn. Each row is stamped with load1 and the
    CPU steal share over its repetition.
    """
    rounds = ctx.rounds or Rounds(ctx.config)
    config = ctx.config
    seen_drops: dict[Phase, int] = {}

    def once(phase: Phase, rep: Repetition) -> None:
        span, first, t0 = environment.Span.start(), len(ctx.rows), clock()
        if phase[0] == "warm" and rep.measured and seen_drops.get(phase) != cache.drops():
            body(phase, Repetition("warm", -1, measured=False))  # re-warm: the drop was not this phase's
        body(phase, rep)
        seen_drops[phase] = cache.drops()
        rounds.charge(phase, clock() - t0)
        span.stamp(ctx.rows[first:])

    def visit(items: list[Phase], round_: int) -> list[Phase]:
        return order.visit(items, order=config.order, seed=config.seed, what=scenario, round_=round_)

    for w in range(config.warmup):
        for phase in visit(todo, -(w + 1)):
            once(phase, Repetition(phase[0], -(w + 1), measured=False))
            ctx.advance()
            yield
    done = dict.fromkeys(todo, 0)
    running, round_ = list(todo), 0
    while running:
        running = [p for p in running if rounds.more(p, done[p])]
        for phase in visit(running, round_):
            once(phase, Repetition(phase[0], done[phase], measured=True))
            done[phase] += 1
            ctx.advance()
            yield
        round_ += 1
    ctx.skip(sum(max(config.planned_repeat - n, 0) for n in done.values()))


def steps_per_driver(config: RunConfig, scenario: str) -> int:
    """Repetitions a scenario runs on one driver at most (for progress bars)."""
    if scenario == "io":  # always cold, one step per fio job
        from .io import JOBS, QUEUE_DEPTHS

        return (config.warmup + config.planned_repeat) * len(config.io_jobs or JOBS) * len(QUEUE_DEPTHS)
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

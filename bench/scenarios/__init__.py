"""The three scenarios of `bench run`, and the context and repetition loop they share.

Each scenario runs `warmup` unrecorded repetitions and then `repeat` recorded ones per
cache mode, every repetition on fresh layers, and appends tidy rows to `ctx.rows`.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import graphdrivers

from .. import cache
from ..config import RunConfig
from ..results import Row
from ..sandbox import Sandbox
from ..workloads import Workload

SCENARIOS = ("layer-create", "rootfs", "exec")

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
    advance: Callable[[], None] = lambda: None
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    def row(self, scenario: str, step: str, **values: object) -> Row:
        row = Row(
            run_id=self.run_id,
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


def repetitions(ctx: Context) -> Iterator[Repetition]:
    """Warm-ups then measured repetitions for every cache mode; cold ones drop caches first.

    Call this generator's next step only when the repetition's setup is done: the page
    cache is dropped right before a cold repetition is handed out.
    """
    for mode in ctx.config.cache_modes:
        for w in range(ctx.config.warmup):
            yield Repetition(mode, -(w + 1), measured=False)
            ctx.advance()
        for i in range(ctx.config.repeat):
            dropped = False
            if mode == "cold":
                cache.drop()
                dropped = True
            yield Repetition(mode, i, True, dropped, cache.page_cache_bytes())
            ctx.advance()


def steps_per_driver(config: RunConfig, scenario: str) -> int:
    """Repetitions a scenario runs on one driver (for progress bars)."""
    per = (config.warmup + config.repeat) * len(config.cache_modes)
    return per * len(config.depths) if scenario == "rootfs" else per


def first_regular_file(tar_path: str) -> str:
    """The first regular file of a layer tar (the bottom-layer file the scenarios read)."""
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isreg() and not member.name.rsplit("/", 1)[-1].startswith(".wh."):
                return member.name.lstrip("./")
    raise ValueError(f"{tar_path} has no regular file")

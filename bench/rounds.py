"""How many repetitions a phase gets: a fixed count, or (`--repeat auto`) until precise.

A phase is one cache mode of a scenario (and one depth of rootfs). Drivers run a phase
interleaved, one repetition each per round, so the load of the rest of the machine falls
on all of them alike. One `Rounds` object is shared by every driver of a scenario and
decides once per round for all of them, from all their rows: another round is taken while
any group of the phase has a median CI wider than `target_ci` of its median, until
`max_repeat` rounds or `max_time` seconds spent on the phase (the time its repetitions took,
`charge`d by the scenarios: phases run interleaved, so wall-clock time would count the
other phases too). Deciding for all drivers together keeps the
interleaving (and equal n side by side); a driver that already is precise pays a few
extra repetitions, which is cheap next to comparing unequal samples.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import numpy as np

from .config import RunConfig
from .results import Row
from .stats import CONFIDENCE, median_ci, median_ranks, precision

log = logging.getLogger(__name__)

Phase = tuple[object, ...]  # (cache mode, depth or None)


class Rounds:
    """The shared stopping rule of one scenario's phases; records why each phase stopped."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.sources: list[list[Row]] = []
        self.decided: dict[tuple[Phase, int], bool] = {}
        self.spent: dict[Phase, float] = defaultdict(float)
        self.stops: dict[Phase, dict[str, object]] = {}

    def watch(self, rows: list[Row]) -> None:
        """Judge precision on these rows too (one driver's rows of this scenario)."""
        self.sources.append(rows)

    def charge(self, phase: Phase, seconds: float) -> None:
        """A repetition of `phase` (any driver's, warm-ups included) took `seconds`."""
        self.spent[phase] += seconds

    def more(self, phase: Phase, done: int) -> bool:
        """Should the phase take another round after `done` measured ones? The same answer
        for every driver that asks about the same round."""
        key = (phase, done)
        if key not in self.decided:
            self.decided[key] = self._decide(phase, done)
        return self.decided[key]

    def _decide(self, phase: Phase, done: int) -> bool:
        config = self.config
        if done < config.repeat:
            return True
        if not config.adaptive:
            self._stop(phase, done, "repeat")
            return False
        worst = self.worst_precision(phase)
        if worst <= config.target_ci:
            self._stop(phase, done, "precise", worst)
            return False
        if done >= config.planned_repeat:
            self._stop(phase, done, "max-repeat", worst)
            return False
        if self.spent[phase] >= config.max_time:
            self._stop(phase, done, "max-time", worst)
            return False
        return True

    def _stop(self, phase: Phase, done: int, reason: str, worst: float | None = None) -> None:
        self.stops[phase] = {"rounds": done, "reason": reason, "worst_precision": worst}
        if reason != "repeat":
            log.info("phase %s: %d rounds (%s, worst CI/median %.3f)", phase, done, reason, worst)

    def worst_precision(self, phase: Phase) -> float:
        """The widest median CI (as a fraction of the median) among the phase's groups; a group
        too small for a 95% interval (n < 6, see bench.stats) is infinitely imprecise."""
        cache, depth = phase
        groups: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
        for rows in self.sources:
            for r in rows:
                if r.cache != cache or r.repetition < 0 or (depth is not None and r.depth != depth):
                    continue
                if r.layer != -1:
                    continue  # per-layer rows (layer-create, pull) are summarised by their chain totals
                if np.isfinite(r.seconds):
                    groups[(r.system, r.driver, r.backing_fs, r.step, r.execdriver)].append(r.seconds)
        widths = []
        for values in groups.values():
            array = np.asarray(values)
            median = float(np.median(array))
            if median_ranks(len(array))[1] < CONFIDENCE:
                widths.append(math.inf)
            else:
                widths.append(precision(median, *median_ci(array)) if median > 0 else 0.0)
        return max(widths, default=0.0)

    def facts(self) -> list[dict[str, object]]:
        """Per phase: rounds taken and why they stopped, for run.json."""
        return [{"cache": p[0], "depth": p[1], **stop} for p, stop in self.stops.items()]

"""`bench history RESULTS_DIR... --out DIR`: each group's median over commits, and its steps.

asv-style: runs are ordered by the commit they measured (their position in `git log` of
this repository when every commit is found there, else by start time), each group's
median and 95% CI is followed from run to run, and a step is flagged where two
neighbouring runs differ by more than their noise: the CIs do not overlap AND the ratio
is beyond --threshold (or below its inverse). Non-overlapping CIs alone would flag tiny
but real shifts; a ratio alone would flag noise. And a step is a level that holds: the run
before the pair (if any) sides with the old level and the run after it (if any) with the
new one, so a single run hit by load on a shared machine is a spike, not two steps. The
flagged steps are printed and each
gets a figure (PNG and PDF); history.csv holds every group's median per run.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
from rich.console import Console
from rich.table import Table

from . import figures, palette, results
from .compare import KEYS, timed
from .machine import REPO
from .report import save
from .stats import CONFIDENCE, summarize

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 1.2


@dataclass(frozen=True)
class Run:
    directory: str
    record: dict
    commit: str  # without a `-dirty` suffix

    @property
    def label(self) -> str:
        dirty = "+" if str(self.record.get("git_commit", "")).endswith("-dirty") else ""
        return f"{self.commit[:8]}{dirty} {str(self.record.get('started', ''))[:19]}"


def commit_order(repo: str) -> list[str] | None:
    """This repository's commits, oldest first, or None when git cannot say."""
    proc = subprocess.run(
        ["git", "-C", repo, "log", "--format=%H", "--all"], capture_output=True, text=True, check=False
    )
    return list(reversed(proc.stdout.split())) if proc.returncode == 0 and proc.stdout else None


def order_runs(directories: list[str], repo: str = REPO) -> tuple[list[Run], str]:
    """Runs in commit order (git log) when every commit is known there, else by start time."""
    runs = []
    for d in directories:
        record = results.load_run(d)
        runs.append(Run(d, record, str(record.get("git_commit", "unknown")).removesuffix("-dirty")))
    commits = commit_order(repo)
    position = {c: i for i, c in enumerate(commits or [])}
    if commits and all(r.commit in position for r in runs):
        return sorted(runs, key=lambda r: (position[r.commit], str(r.record.get("started", "")))), "git log"
    return sorted(runs, key=lambda r: str(r.record.get("started", ""))), "start time"


def history_table(runs: list[Run]) -> pd.DataFrame:
    """Per run (in order) and group: n, median, 95% CI."""
    frames = []
    for i, run in enumerate(runs):
        stats = summarize(timed(results.load([run.directory])), KEYS)
        frames.append(stats.assign(order=i, run=run.label, run_id=run.record.get("run_id"), commit=run.commit))
    table = pd.concat(frames, ignore_index=True)
    return table[table["n"] > 0]


def _sides_with(value: float, level: float, other: float) -> bool:
    """Is `value` nearer (in ratio) to `level` than to `other`?"""
    return abs(math.log(value / level)) < abs(math.log(value / other))


SIDE = ("n", "ms", "ci_low_ms", "ci_high_ms", "ci_level")  # what a flagged step shows of each run


def _side(name: str, row: object) -> dict[str, object]:
    """One run of a flagged step: n, median and the median's CI (ms) with its confidence."""
    values = (row.n, row.median * 1000, row.ci_low * 1000, row.ci_high * 1000, row.ci_level)  # type: ignore[attr-defined]
    return {f"{name}_{c}": v for c, v in zip(SIDE, values, strict=True)}


def _shown(step: pd.Series, side: str) -> str:
    level = step[f"{side}_ci_level"]
    at = "" if level >= CONFIDENCE else f" at {level:.0%}"
    return (f"{step[f'{side}_ms']:.3f} ({step[f'{side}_ci_low_ms']:.3f}..{step[f'{side}_ci_high_ms']:.3f}{at}, "
            f"n={step[f'{side}_n']})")


def find_steps(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Neighbouring runs of a group whose CIs do not overlap, whose ratio is beyond threshold,
    and whose levels hold in the runs around them (where there are any)."""
    flagged = []
    for key, g in table.groupby(KEYS, dropna=False, sort=True):
        medians = g.sort_values("order")
        rows = list(medians.itertuples())
        for i in range(1, len(rows)):
            before, after = rows[i - 1], rows[i]
            if not (before.median > 0 and after.median > 0):
                continue
            ratio = after.median / before.median
            apart = after.ci_low > before.ci_high or after.ci_high < before.ci_low
            holds = (i < 2 or _sides_with(rows[i - 2].median, before.median, after.median)) and (
                i + 1 >= len(rows) or _sides_with(rows[i + 1].median, after.median, before.median)
            )
            if apart and holds and (ratio > threshold or ratio < 1 / threshold):
                flagged.append(
                    {
                        **dict(zip(KEYS, key, strict=True)),
                        "before": before.run,
                        "after": after.run,
                        **_side("before", before),
                        **_side("after", after),
                        "ratio": ratio,
                    }
                )
    columns = [*KEYS, "before", "after", *[f"{side}_{c}" for side in ("before", "after") for c in SIDE], "ratio"]
    return pd.DataFrame(flagged, columns=columns)


def step_figure(table: pd.DataFrame, step: pd.Series) -> plt.Figure:
    """One group's median and CI over the runs, the flagged step shaded."""
    mask = pd.Series(True, index=table.index)
    for k in KEYS:
        mask &= table[k] == step[k]
    g = table[mask].sort_values("order")
    fig, (ax,) = figures.new_figure(1, width=max(5.0, 0.8 * len(g)), height=3.6)
    colour = palette.colour(str(step["driver"]))
    ax.errorbar(
        g["order"],
        g["median"] * 1000,
        yerr=[(g["median"] - g["ci_low"]) * 1000, (g["ci_high"] - g["median"]) * 1000],
        color=colour,
        marker="o",
        capsize=4,
    )
    after = int(g.loc[g["run"] == step["after"], "order"].iloc[0])
    ax.axvspan(after - 1, after, color="grey", alpha=0.15)
    ax.set_xticks(g["order"], g["run"], rotation=30, ha="right", fontsize=7)
    figures.axis_scale(ax, pd.concat([g["ci_low"], g["ci_high"]]) * 1000, "y", "ms (median, 95% CI)")
    ax.set_xlabel("run (commit, start time), oldest first")
    title = figures.panel_title(str(step["step"]), str(step["execdriver"]), str(step["cache"]))
    text = (
        f"{step['driver']} {step['scenario']} depth {step['depth']}: x{step['ratio']:.2f} from {step['before']} "
        f"to {step['after']}. n = {g['n'].min()}-{g['n'].max()} per run."
    )
    figures.finish(fig, f"{step['driver']} {step['scenario']}: {title}", text, [str(step["driver"])])
    return fig


def history(directories: list[str], out: str, threshold: float = DEFAULT_THRESHOLD) -> int:
    try:
        runs, ordering = order_runs(directories)
        table = history_table(runs)
    except (results.ResultsError, OSError) as exc:
        print(f"bench history: {exc}")
        return 2
    os.makedirs(out, exist_ok=True)
    table.to_csv(os.path.join(out, "history.csv"), index=False)
    steps = find_steps(table, threshold)
    print(f"{len(runs)} runs ordered by {ordering}: " + ", ".join(r.label for r in runs))
    t = Table(title=f"steps: neighbouring runs with non-overlapping 95% CIs and a ratio beyond {threshold}x")
    columns = ("driver", "scenario", "step", "depth", "cache", "exec", "before", "after", "ms: median (CI, n)",
               "ratio", "figure")
    for col in columns:
        t.add_column(col)
    for i, s in steps.iterrows():
        name = save(step_figure(table, s), out, f"step_{i:03d}")
        t.add_row(
            s["driver"],
            s["scenario"],
            s["step"],
            str(s["depth"]),
            s["cache"],
            s["execdriver"] or "-",
            s["before"],
            s["after"],
            f"{_shown(s, 'before')} -> {_shown(s, 'after')}",
            f"{s['ratio']:.2f}",
            name,
        )
    Console(width=220).print(t)
    print(f"{len(steps)} step(s) flagged over {table.groupby(KEYS, dropna=False).ngroups} groups; {out}/history.csv")
    return 0

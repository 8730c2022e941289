"""The summary table printed at the end of `bench run` (and by `bench report`/`compare`).

Per-layer layer-create rows are summarised by their chain totals here (the per-layer
rows stay in the results files); each group shows its median, spread and 95% CI, and its
ratio to the fastest driver or peer measured side by side in the same group (`x fastest`) and
to the floor measured on the same driver's filesystem (`x floor`). The same numbers go
to summary.csv (every column), summary.txt, and summary.md / summary.tex (the columns a
paper shows), so no reader computes them differently.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from . import variants
from .results import FLOOR, GROUP_KEYS, STRATA
from .scenarios import SCENARIOS
from .stats import CONFIDENCE, describe, finite, median_ci, median_ranks, ratio_ci, summarize

log = logging.getLogger(__name__)

GROUP = ["run_id", *GROUP_KEYS]  # never pool or rank across runs
COMPARE_KEYS = ["host", "scenario", "step", "workload", "depth", "cache", "execdriver"]  # x fastest: per host
# a floor is measured per driver on its backing filesystem: each row divides by its driver's floor there
FLOOR_KEYS = ["run_id", "host", "driver", "backing_fs", "scenario", "step", "workload", "layer", "depth", "cache"]
IN_PROCESS = ("local", "")  # the worker of rows measured by one process, every driver interleaved
RATIO_COLUMNS = ["vs_fastest", "vs_fastest_low", "vs_fastest_high", "vs_floor", "vs_floor_low", "vs_floor_high"]
SPACE_COLUMNS = ["space_amplification", "space_n", "space_low", "space_high", "space_level"]


def _cell(worker: str, driver: str) -> str:
    """What a group was measured side by side with: a plain run interleaves every driver in one
    process; a matrix cell (`--isolate process`, `--cluster`) holds one driver with its peers
    and floors, measured one cell after another (or at once), never interleaved with another."""
    return "" if worker in IN_PROCESS else driver


def _ratios(stats: pd.DataFrame, values: list[np.ndarray]) -> pd.DataFrame:
    """x fastest and x floor with their bootstrap CIs (stats.ratio_ci), by position in `stats`.
    x fastest ranks contenders measured side by side only: in a matrix cell a group with no
    peer beside it has none (the other drivers ran in other cells)."""
    out = pd.DataFrame(np.nan, index=stats.index, columns=RATIO_COLUMNS)
    measured = stats[stats["median"].notna() & (stats["median"] > 0)]
    engines = measured[measured["system"] != FLOOR]
    for _, g in engines.groupby([*["run_id", *COMPARE_KEYS], "_cell"], dropna=False):
        if len(g) < 2 and g["_cell"].iloc[0]:
            continue
        best = g["median"].idxmin()
        for i in g.index:
            out.loc[i, "vs_fastest"] = stats.loc[i, "median"] / stats.loc[best, "median"]
            if i != best:
                out.loc[i, ["vs_fastest_low", "vs_fastest_high"]] = ratio_ci(values[best], values[i])
    floors = measured[measured["system"] == FLOOR]
    # runc and crun both floor `true`: the faster one is the floor
    best_floor = floors.groupby(FLOOR_KEYS, dropna=False)["median"].idxmin().rename("_floor").reset_index()
    others = stats[stats["system"] != FLOOR].reset_index().merge(best_floor, how="inner", on=FLOOR_KEYS)
    for i, floor in zip(others["index"], others["_floor"], strict=True):
        if pd.notna(stats.loc[i, "median"]):
            out.loc[i, "vs_floor"] = stats.loc[i, "median"] / stats.loc[floor, "median"]
            out.loc[i, ["vs_floor_low", "vs_floor_high"]] = ratio_ci(values[floor], values[i])
    return out


def _space(space: list[np.ndarray]) -> pd.DataFrame:
    """Each group's median space amplification, with its n and the median's CI (stats.median_ci)."""
    rows = []
    for values in space:
        low, high = median_ci(values)
        median = float(np.median(values)) if len(values) else float("nan")
        rows.append([median, len(values), low, high, median_ranks(len(values))[1]])
    return pd.DataFrame(rows, columns=SPACE_COLUMNS)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Group statistics for the table: chain rows of layer-create, every other scenario; per run
    and host, so `x fastest` compares drivers measured side by side, never one run's driver (or
    one host's, or one matrix cell's) with another's; `x floor` and `space x` per group too."""
    keep = variants.labelled(df[(df["scenario"] != "layer-create") | (df["layer"] == -1)])
    stats = summarize(keep, GROUP)
    if stats.empty:
        return stats.assign(**{c: pd.Series(dtype=float) for c in [*RATIO_COLUMNS, *SPACE_COLUMNS]})
    groups = [g for _, g in keep.groupby(GROUP, dropna=False, sort=True)]  # summarize's order: row i is group i
    stats["_cell"] = [_cell(str(g["worker"].iloc[0]), d) for g, d in zip(groups, stats["driver"], strict=True)]
    stats = pd.concat(
        [
            stats,
            _ratios(stats, [finite(g["seconds"]) for g in groups]),
            _space([finite(g["space_amplification"]) for g in groups]),
        ],
        axis=1,
    )
    order = {name: i for i, name in enumerate(SCENARIOS)}
    merged = stats.assign(_order=stats["scenario"].map(order))
    merged = merged.assign(_system=merged["system"].map(lambda v: {STRATA: 0, FLOOR: 2}.get(v, 1)))
    keys = ["host", "_order", "workload", "step", "layer", "depth", "cache", "driver", "_system", "system",
            "execdriver"]
    merged = merged.sort_values(keys, kind="stable").drop(columns=["_order", "_system", "_cell"])
    return merged.reset_index(drop=True)


def _ratio(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.2f}"


def _with_ci(value: float, low: float, high: float, level: float = 1.0) -> str:
    """A ratio with its CI (and the CI's confidence when below 95%); the value alone where it
    has none (the fastest itself, one value)."""
    if pd.isna(value):
        return "-"
    if pd.isna(low) or pd.isna(high):
        return f"{value:.2f}"
    text = f"{value:.2f} ({low:.2f}-{high:.2f})"
    return text if level >= CONFIDENCE else f"{text} at {level:.0%}"


def _ratio_cells(stats: pd.DataFrame) -> dict[str, list[str]]:
    """x fastest, x floor and space x with their CIs, one string per row."""
    return {
        "x fastest": [_with_ci(*v) for v in zip(stats["vs_fastest"], stats["vs_fastest_low"],
                                                stats["vs_fastest_high"], strict=True)],
        "x floor": [_with_ci(*v) for v in zip(stats["vs_floor"], stats["vs_floor_low"], stats["vs_floor_high"],
                                              strict=True)],
        "space x": [_with_ci(*v) for v in zip(stats["space_amplification"], stats["space_low"], stats["space_high"],
                                              stats["space_level"], strict=True)],
    }  # fmt: skip


def _ms(seconds: float) -> str:
    return "-" if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)) else f"{seconds * 1000:.2f}"


def _ci(low: float, high: float, level: float, sep: str = "..") -> str:
    """The median's CI in ms, with the confidence it reaches when that is below 95% (n < 6)."""
    if pd.isna(low) or pd.isna(high):
        return "-"
    text = f"{_ms(low)}{sep}{_ms(high)}"
    return text if level >= CONFIDENCE else f"{text} ({level:.0%})"


def rich_table(stats: pd.DataFrame, title: str = "bench: medians (ms) with spread") -> Table:
    table = Table(title=title, show_lines=False)
    for col in (
        "host",
        "system",
        "driver",
        "backend",
        "fs",
        "scenario",
        "step",
        "depth",
        "cache",
        "exec",
        "n",
        "median",
        "IQR",
        "95% CI",
        "CI/median",
        "x fastest",
        "x floor",
        "space x",
        "note",
    ):
        table.add_column(
            col,
            justify="right"
            if col in ("depth", "n", "median", "IQR", "CI/median", "x fastest", "x floor", "space x")
            else "left",
        )
    ratios = _ratio_cells(stats)
    for i, r in enumerate(stats.itertuples(index=False)):
        note = r.note or ""
        if r.wide:
            note = ("WIDE SPREAD: not comparable; " + note).rstrip("; ")
        table.add_row(
            r.host or "-",
            r.system,
            escape(r.driver),  # a variant, aufs[fuse_passthrough=false], is not markup
            r.backend,
            r.backing_fs,
            r.scenario,
            r.step,
            str(r.depth),
            r.cache,
            r.execdriver or "-",
            str(r.n),
            _ms(r.median),
            _ms(r.iqr),
            _ci(r.ci_low, r.ci_high, r.ci_level),
            "-" if pd.isna(r.precision) else f"{r.precision:.0%}",
            ratios["x fastest"][i],
            ratios["x floor"][i],
            ratios["space x"][i],
            note,
        )
    return table


def plain_text(stats: pd.DataFrame) -> str:
    """The same table as text with fixed columns (for READMEs, commit messages, CI logs)."""
    cols = [
        "host",
        "system",
        "driver",
        "backend",
        "backing_fs",
        "scenario",
        "step",
        "depth",
        "cache",
        "execdriver",
        "n",
        "median_ms",
        "iqr_ms",
        "ci95_ms",
        "ci_over_median",
        "p90_ms",
        "p99_ms",
        "x_fastest",
        "x_floor",
        "space_x",
        "note",
    ]
    ratios = _ratio_cells(stats)
    out = pd.DataFrame(
        {
            "host": stats["host"].fillna("").replace("", "-"),
            "system": stats["system"],
            "driver": stats["driver"],
            "backend": stats["backend"],
            "backing_fs": stats["backing_fs"],
            "scenario": stats["scenario"],
            "step": stats["step"],
            "depth": stats["depth"],
            "cache": stats["cache"],
            "execdriver": stats["execdriver"].replace("", "-"),
            "n": stats["n"],
            "median_ms": stats["median"].map(_ms),
            "iqr_ms": stats["iqr"].map(_ms),
            "ci95_ms": [_ci(*ci) for ci in zip(stats["ci_low"], stats["ci_high"], stats["ci_level"], strict=True)],
            "ci_over_median": stats["precision"].map(_ratio),
            "p90_ms": stats["p90"].map(_ms),
            "p99_ms": stats["p99"].map(_ms),
            "x_fastest": ratios["x fastest"],
            "x_floor": ratios["x floor"],
            "space_x": ratios["space x"],
            "note": [("WIDE; " if w else "") + (n or "") for w, n in zip(stats["wide"], stats["note"], strict=True)],
        },
        columns=cols,
    )
    return out.to_string(index=False)


def publication(stats: pd.DataFrame) -> pd.DataFrame:
    """The columns a paper shows, in ms; tail percentiles only where n supports them."""
    measured = stats[stats["n"] > 0]
    return pd.DataFrame(
        {
            "system": measured["system"],
            "driver": measured["driver"],
            "scenario": measured["scenario"],
            "step": measured["step"],
            "depth": measured["depth"],
            "cache": measured["cache"],
            "exec": measured["execdriver"].replace("", "-"),
            "n": measured["n"],
            "median ms": measured["median"].map(_ms),
            "95% CI ms": [
                _ci(*ci, sep="-")
                for ci in zip(measured["ci_low"], measured["ci_high"], measured["ci_level"], strict=True)
            ],
            "p90 ms": measured["p90"].map(_ms),
            "p99 ms": measured["p99"].map(_ms),
            "x fastest": _ratio_cells(measured)["x fastest"],
            "x floor": _ratio_cells(measured)["x floor"],
        }
    )


def write_summaries(stats: pd.DataFrame, directory: str) -> list[str]:
    """summary.csv (every statistic), summary.txt, summary.md and summary.tex in `directory`."""
    stats.to_csv(os.path.join(directory, "summary.csv"), index=False)
    with open(os.path.join(directory, "summary.txt"), "w") as f:
        f.write(plain_text(stats) + "\n")
    table = publication(stats)
    with open(os.path.join(directory, "summary.md"), "w") as f:
        f.write(table.to_markdown(index=False, disable_numparse=True) + "\n")
    styled = table.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis="columns")
    latex = styled.to_latex(
        hrules=True,
        caption="Medians with exact order-statistic 95\\% CIs (below n = 6: [min, max] at the confidence given); "
        "p90/p99 only where n supports them.",
    )
    with open(os.path.join(directory, "summary.tex"), "w") as f:
        f.write(latex)
    return ["summary.csv", "summary.txt", "summary.md", "summary.tex"]


def start_shares(df: pd.DataFrame) -> pd.DataFrame:
    """Per driver, cache mode and execdriver of strata's exec rows: the end-to-end start
    (`run_rm_true`), the part of it spent in the driver (`run_rm_true:driver`:
    create_read_write + get + put + remove), that part's share, and the runtime-only `true`
    beside them -- each a median with n and its CI (the share's from stats.ratio_ci)."""
    keys = ["run_id", "host", "driver", "backend", "backing_fs", "cache", "execdriver"]
    rows = df[(df["scenario"] == "exec") & (df["system"] == STRATA)]
    out = []
    for key, g in rows.groupby(keys, dropna=False, sort=True):
        steps = {step: finite(s["seconds"]) for step, s in g.groupby("step")}
        start, driver = steps.get("run_rm_true", np.array([])), steps.get("run_rm_true:driver", np.array([]))
        if not (len(start) and len(driver)):
            continue
        record = dict(zip(keys, key, strict=True))
        for name, values in (("run_rm_true", start), ("driver", driver), ("true", steps.get("true", np.array([])))):
            d = describe(values)
            record[f"{name}_n"] = d["n"]
            record[f"{name}_ms"] = _interval_ms(d)
        share = float(np.median(driver) / np.median(start))
        record["driver_share"] = _with_ci(share, *ratio_ci(start, driver))
        out.append(record)
    if not out:
        return pd.DataFrame()
    table = pd.DataFrame(out).drop(columns="run_id")
    return table.drop(columns="host") if (table["host"] == "").all() else table


def _interval_ms(d: dict[str, object]) -> str:
    """`median (low..high)` in ms, the CI's level where it is below 95%; '-' when not measured."""
    if not d["n"]:
        return "-"
    return f"{_ms(d['median'])} ({_ci(d['ci_low'], d['ci_high'], d['ci_level'])})"  # type: ignore[arg-type]

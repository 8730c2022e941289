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

import pandas as pd
from rich.markup import escape
from rich.table import Table

from . import variants
from .results import FLOOR, GROUP_KEYS, STRATA
from .scenarios import SCENARIOS
from .stats import summarize

log = logging.getLogger(__name__)

SPACE_KEYS = ["host", "system", "driver", "scenario", "step", "workload", "depth", "cache"]
COMPARE_KEYS = ["host", "scenario", "step", "workload", "depth", "cache", "execdriver"]  # x fastest: per host
# a floor is measured per driver (on its backing filesystem): each row divides by its driver's floor
FLOOR_KEYS = ["run_id", "host", "driver", "scenario", "step", "workload", "layer", "depth", "cache"]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Group statistics for the table: chain rows of layer-create, every other scenario; per run
    and host, so `x fastest` compares drivers measured side by side, never one run's driver (or
    one host's) with another's."""
    keep = variants.labelled(df[(df["scenario"] != "layer-create") | (df["layer"] == -1)])
    stats = summarize(keep, ["run_id", *GROUP_KEYS])  # never pool or rank across runs
    if stats.empty:
        return stats.assign(vs_fastest=pd.Series(dtype=float), vs_floor=pd.Series(dtype=float))
    engines = stats["median"].where(stats["system"] != FLOOR)  # the floor is not a contender
    fastest = engines.groupby([stats[k] for k in ["run_id", *COMPARE_KEYS]], dropna=False).transform("min")
    stats["vs_fastest"] = engines / fastest
    floor = (
        stats[stats["system"] == FLOOR]
        .groupby(FLOOR_KEYS, dropna=False)["median"]
        .min()  # runc and crun both floor `true`: the faster one is the floor
        .rename("floor_median")
        .reset_index()
    )
    stats = stats.merge(floor, how="left", on=FLOOR_KEYS)
    stats["vs_floor"] = (stats["median"] / stats["floor_median"]).where(stats["system"] != FLOOR)
    stats = stats.drop(columns="floor_median")
    space = (
        keep[keep["space_amplification"].notna()]
        .groupby(SPACE_KEYS, dropna=False)["space_amplification"]
        .median()
        .rename("space_amplification")
        .reset_index()
    )
    merged = stats.merge(space, how="left", on=SPACE_KEYS)
    order = {name: i for i, name in enumerate(SCENARIOS)}
    merged = merged.assign(_order=merged["scenario"].map(order))
    merged = merged.assign(_system=merged["system"].map(lambda v: {STRATA: 0, FLOOR: 2}.get(v, 1)))
    keys = ["host", "_order", "workload", "step", "layer", "depth", "cache", "driver", "_system", "system",
            "execdriver"]
    return merged.sort_values(keys, kind="stable").drop(columns=["_order", "_system"]).reset_index(drop=True)


def _ratio(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.2f}"


def _ms(seconds: float) -> str:
    return "-" if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)) else f"{seconds * 1000:.2f}"


def rich_table(stats: pd.DataFrame, title: str = "bench: medians (ms) with spread") -> Table:
    table = Table(title=title, show_lines=False)
    for col in (
        "host",
        "system",
        "driver",
        "backend",
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
    for r in stats.itertuples(index=False):
        note = r.note or ""
        if r.wide:
            note = ("WIDE SPREAD: not comparable; " + note).rstrip("; ")
        amp = getattr(r, "space_amplification", float("nan"))
        table.add_row(
            r.host or "-",
            r.system,
            escape(r.driver),  # a variant, aufs[fuse_passthrough=false], is not markup
            r.backend,
            r.scenario,
            r.step,
            str(r.depth),
            r.cache,
            r.execdriver or "-",
            str(r.n),
            _ms(r.median),
            _ms(r.iqr),
            f"{_ms(r.ci_low)}..{_ms(r.ci_high)}" if r.n else "-",
            "-" if pd.isna(r.precision) else f"{r.precision:.0%}",
            _ratio(r.vs_fastest),
            _ratio(r.vs_floor),
            _ratio(amp),
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
    out = pd.DataFrame(
        {
            "host": stats["host"].fillna("").replace("", "-"),
            "system": stats["system"],
            "driver": stats["driver"],
            "backend": stats["backend"],
            "scenario": stats["scenario"],
            "step": stats["step"],
            "depth": stats["depth"],
            "cache": stats["cache"],
            "execdriver": stats["execdriver"].replace("", "-"),
            "n": stats["n"],
            "median_ms": stats["median"].map(_ms),
            "iqr_ms": stats["iqr"].map(_ms),
            "ci95_ms": [f"{_ms(a)}..{_ms(b)}" for a, b in zip(stats["ci_low"], stats["ci_high"], strict=True)],
            "ci_over_median": stats["precision"].map(_ratio),
            "p90_ms": stats["p90"].map(_ms),
            "p99_ms": stats["p99"].map(_ms),
            "x_fastest": stats["vs_fastest"].map(_ratio),
            "x_floor": stats["vs_floor"].map(_ratio),
            "space_x": stats.get("space_amplification", pd.Series(float("nan"), index=stats.index)).map(_ratio),
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
            "95% CI ms": [f"{_ms(a)}-{_ms(b)}" for a, b in zip(measured["ci_low"], measured["ci_high"], strict=True)],
            "p90 ms": measured["p90"].map(_ms),
            "p99 ms": measured["p99"].map(_ms),
            "x fastest": measured["vs_fastest"].map(_ratio),
            "x floor": measured["vs_floor"].map(_ratio),
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
        caption="Medians with percentile-bootstrap 95\\% CIs; p90/p99 only where n supports them.",
    )
    with open(os.path.join(directory, "summary.tex"), "w") as f:
        f.write(latex)
    return ["summary.csv", "summary.txt", "summary.md", "summary.tex"]


def start_shares(stats: pd.DataFrame) -> pd.DataFrame:
    """Per driver, cache mode and execdriver: the end-to-end start (`run_rm_true`), the part
    of it spent in the driver (`run_rm_true:driver`: create_read_write + get + put +
    remove), that part's share, and the runtime-only `true` beside them."""
    keys = ["run_id", "driver", "backend", "backing_fs", "cache", "execdriver"]
    exec_rows = stats[(stats["scenario"] == "exec") & (stats["n"] > 0)]
    wide = exec_rows.pivot_table(index=keys, columns="step", values="median", aggfunc="first")
    if "run_rm_true" not in wide or "run_rm_true:driver" not in wide:
        return pd.DataFrame()
    out = pd.DataFrame(
        {
            "run_rm_true_ms": wide["run_rm_true"] * 1000,
            "driver_ms": wide["run_rm_true:driver"] * 1000,
            "driver_share": wide["run_rm_true:driver"] / wide["run_rm_true"],
            "true_ms": wide["true"] * 1000 if "true" in wide else float("nan"),
        }
    )
    return out.reset_index().drop(columns="run_id")

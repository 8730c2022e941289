"""The summary table printed at the end of `bench run` (and by `bench report`/`compare`).

Per-layer layer-create rows are summarised by their chain totals here (the per-layer
rows stay in the results files); each group shows its median, spread and 95% CI, and its
ratio to the fastest driver measured side by side in the same group.
"""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table

from .scenarios import SCENARIOS
from .stats import summarize

COMPARE_KEYS = ["scenario", "step", "workload", "depth", "cache", "execdriver"]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Group statistics for the table: chain rows of layer-create, every other scenario."""
    keep = df[(df["scenario"] != "layer-create") | (df["layer"] == -1)]
    stats = summarize(keep)
    if stats.empty:
        return stats.assign(vs_fastest=pd.Series(dtype=float))
    fastest = stats.groupby(COMPARE_KEYS, dropna=False)["median"].transform("min")
    stats["vs_fastest"] = stats["median"] / fastest
    space = (
        keep[keep["space_amplification"].notna()]
        .groupby(["driver", "scenario", "step", "workload", "depth", "cache"], dropna=False)["space_amplification"]
        .median()
        .rename("space_amplification")
        .reset_index()
    )
    merged = stats.merge(space, how="left", on=["driver", "scenario", "step", "workload", "depth", "cache"])
    order = {name: i for i, name in enumerate(SCENARIOS)}
    merged = merged.assign(_order=merged["scenario"].map(order))
    keys = ["_order", "workload", "step", "depth", "cache", "execdriver", "driver"]
    return merged.sort_values(keys, kind="stable").drop(columns="_order").reset_index(drop=True)


def _ms(seconds: float) -> str:
    return "-" if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)) else f"{seconds * 1000:.2f}"


def rich_table(stats: pd.DataFrame, title: str = "bench: medians (ms) with spread") -> Table:
    table = Table(title=title, show_lines=False)
    for col in (
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
        "x fastest",
        "space x",
        "note",
    ):
        table.add_column(
            col, justify="right" if col in ("depth", "n", "median", "IQR", "x fastest", "space x") else "left"
        )
    for r in stats.itertuples(index=False):
        note = r.note or ""
        if r.wide:
            note = ("WIDE SPREAD: not comparable; " + note).rstrip("; ")
        amp = getattr(r, "space_amplification", float("nan"))
        table.add_row(
            r.driver,
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
            "-" if pd.isna(r.vs_fastest) else f"{r.vs_fastest:.2f}",
            "-" if pd.isna(amp) else f"{amp:.2f}",
            note,
        )
    return table


def plain_text(stats: pd.DataFrame) -> str:
    """The same table as text with fixed columns (for READMEs, commit messages, CI logs)."""
    cols = [
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
        "x_fastest",
        "space_x",
        "note",
    ]
    out = pd.DataFrame(
        {
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
            "x_fastest": stats["vs_fastest"].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}"),
            "space_x": stats.get("space_amplification", pd.Series(float("nan"), index=stats.index)).map(
                lambda v: "-" if pd.isna(v) else f"{v:.2f}"
            ),
            "note": [("WIDE; " if w else "") + (n or "") for w, n in zip(stats["wide"], stats["note"], strict=True)],
        },
        columns=cols,
    )
    return out.to_string(index=False)

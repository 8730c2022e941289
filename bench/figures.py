"""The figures of `bench report` and the notebook, drawn the same way for both.

Paper rules: every repetition is a point, with the median and its 95% CI drawn over them
(a bar hides n and the spread); colours come from bench.palette so a driver keeps its
colour in every figure; an axis is logarithmic only when its values span more than a
decade, and then says so; legends sit outside the data; every figure carries a caption
with n, workload, backing filesystem, cache mode and machine, so a figure copied into a
paper still says what it shows. Functions return matplotlib Figures; the caller saves.
"""

from __future__ import annotations

import logging
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

from . import palette
from .stats import finite, median_ci

log = logging.getLogger(__name__)

DECADE = 10.0
PANEL_COLUMNS = 4
ROOTFS_DEPTH_STEPS = ("create_read_write+get", "put", "remove")


def spans_decades(values: object) -> bool:
    """More than a decade between the smallest and largest positive value."""
    positive = finite(values)
    positive = positive[positive > 0]
    return len(positive) > 1 and positive.max() / positive.min() > DECADE


def axis_scale(ax: plt.Axes, values: object, axis: str, label: str) -> None:
    """Log scale only where the values span decades, and the label says which."""
    log_scale = spans_decades(values)
    target = ax.yaxis if axis == "y" else ax.xaxis
    if log_scale:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(StrMethodFormatter("{x:g}"))  # 0.05, not 5x10^-2
        target.set_minor_formatter(NullFormatter())
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(label + (" (log scale)" if log_scale else ""))


def timed_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows figures show: chain totals of layer-create, measured values only."""
    rows = rows[(rows["scenario"] != "layer-create") | (rows["layer"] == -1)]
    return rows[rows["seconds"].notna()]


def panel_title(step: str, execdriver: str, cache: str) -> str:
    return step + (f" [{execdriver}]" if execdriver else "") + (f" ({cache} cache)" if cache != "warm" else "")


def caption(rows: pd.DataFrame, runs: list[dict], extra: str = "") -> str:
    """n, workload, backing filesystem, cache mode and machine of what a figure shows."""
    n = rows.groupby(["run_id", "driver", "step", "depth", "cache", "execdriver"], dropna=False)["seconds"].count()
    n_text = f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}-{n.max()}"
    fs = "; ".join(
        f"{d} on {f}" for d, f in sorted(set(zip(rows["driver"], rows["backing_fs"].fillna("?"), strict=True)))
    )
    machines = sorted(
        {
            f"{m.get('cpu_model')}, {m.get('cores')} cores, {int(m.get('memory_bytes', 0)) >> 30} GiB, "
            f"kernel {m.get('kernel')}"
            for m in (run.get("machine", {}) for run in runs)
        }
    )
    parts = [
        f"{n_text} repetitions per point set",
        "workload " + ", ".join(sorted(rows["workload"].dropna().unique())),
        "cache " + ", ".join(sorted(rows["cache"].dropna().unique())),
        "backing fs: " + fs,
        "machine: " + " | ".join(machines),
        "runs: " + ", ".join(f"{r.get('run_id')} ({str(r.get('git_commit', '?'))[:10]})" for r in runs),
    ]
    return ". ".join(p for p in [*parts, extra] if p) + "."


def new_figure(panels: int, width: float = 3.4, height: float = 3.0) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(panels, PANEL_COLUMNS)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.8, height * rows + 1.0), layout="constrained")
    flat = list(np.atleast_1d(axes).ravel())
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def finish(fig: plt.Figure, title: str, text: str, labels: list[str], extra: list[Line2D] | None = None) -> None:
    handles = [
        Line2D([], [], color=palette.colour(label), marker="o", linestyle=palette.dash(label, labels), label=label)
        for label in labels
    ]
    fig.legend(handles=handles + (extra or []), loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.text(0.0, 0.0, text, ha="left", va="top", fontsize=7, wrap=True, transform=fig.transFigure)


def _points_with_median(ax: plt.Axes, labels: list[str], panel: pd.DataFrame, stats: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)  # the same jitter every time the report is drawn
    ticks = []
    for i, label in enumerate(labels):
        values = finite(panel.loc[panel["driver"] == label, "seconds"]) * 1000
        if len(values) == 0:
            ticks.append(f"{label}\nn=0")
            continue
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=10, alpha=0.55, color=palette.colour(label))
        row = stats[stats["driver"] == label].iloc[0]
        med, low, high = row["median"] * 1000, row["ci_low"] * 1000, row["ci_high"] * 1000
        ax.errorbar(
            [i], [med], yerr=[[med - low], [high - med]], fmt="_", color="black", markersize=22, capsize=5, zorder=3
        )
        ticks.append(f"{label}\nn={len(values)}")
    ax.set_xticks(range(len(labels)), ticks, fontsize=7)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    axis_scale(ax, panel["seconds"] * 1000, "y", "ms")


def step_panels(rows: pd.DataFrame, scenario: str) -> tuple[pd.DataFrame, str, list[str], list[tuple]] | None:
    """A scenario's rows (rootfs: the deepest image only; rootfs_vs_depth has the rest), a
    note saying so, the series labels, and one panel key (step, execdriver, cache) each."""
    sub = timed_rows(rows[rows["scenario"] == scenario])
    if sub.empty:
        return None
    note = ""
    if scenario == "rootfs":
        depth = int(sub["depth"].max())
        sub, note = sub[sub["depth"] == depth], f"rootfs at depth {depth} (all depths: rootfs_vs_depth)"
    panels = list(sub.groupby(["step", "execdriver", "cache"], sort=True).groups)
    return sub, note, sorted(sub["driver"].unique()), panels


MEDIAN_HANDLE = Line2D(
    [], [], color="black", marker="_", markersize=14, linestyle="", label="median, 95% CI (n < 6: min-max)"
)


def scenario_figure(rows: pd.DataFrame, stats: pd.DataFrame, scenario: str, runs: list[dict]) -> plt.Figure | None:
    """One panel per step: every repetition per driver, the median and its CI over them."""
    chosen = step_panels(rows, scenario)
    if chosen is None:
        return None
    sub, note, labels, panels = chosen
    st = stats[(stats["scenario"] == scenario) & stats["depth"].isin(sub["depth"].unique())]
    fig, axes = new_figure(len(panels))
    for ax, (step, execdriver, cache) in zip(axes, panels, strict=True):
        mask = (sub["step"] == step) & (sub["execdriver"] == execdriver) & (sub["cache"] == cache)
        smask = (st["step"] == step) & (st["execdriver"] == execdriver) & (st["cache"] == cache)
        _points_with_median(ax, labels, sub[mask], st[smask])
        ax.set_title(panel_title(step, execdriver, cache), fontsize=9)
    finish(fig, f"{scenario}: every repetition, median and 95% CI", caption(sub, runs, note), labels, [MEDIAN_HANDLE])
    return fig


def depth_figure(rows: pd.DataFrame, stats: pd.DataFrame, runs: list[dict]) -> plt.Figure | None:
    """rootfs steps against image depth, one panel per step and cache mode, log axes where
    the values span decades so the fast drivers are not flattened to zero."""
    sub = timed_rows(rows[(rows["scenario"] == "rootfs") & rows["step"].isin(ROOTFS_DEPTH_STEPS)])
    if sub.empty:
        return None
    st = stats[(stats["scenario"] == "rootfs") & (stats["n"] > 0)]
    labels = sorted(sub["driver"].unique())
    panels = list(sub.groupby(["cache", "step"], sort=True).groups)
    fig, axes = new_figure(len(panels), width=4.2, height=3.4)
    rng = np.random.default_rng(0)
    for ax, (cache, step) in zip(axes, panels, strict=True):
        for label in labels:
            points = sub[(sub["driver"] == label) & (sub["step"] == step) & (sub["cache"] == cache)]
            if points.empty:
                continue
            colour = palette.colour(label)
            jitter = 2 ** rng.uniform(-0.08, 0.08, len(points))
            ax.scatter(points["depth"] * jitter, points["seconds"] * 1000, s=6, alpha=0.35, color=colour)
            g = st[(st["driver"] == label) & (st["step"] == step) & (st["cache"] == cache)].sort_values("depth")
            style = palette.dash(label, labels)
            ax.plot(g["depth"], g["median"] * 1000, marker="o", color=colour, markersize=4, linestyle=style)
            ax.fill_between(g["depth"], g["ci_low"] * 1000, g["ci_high"] * 1000, color=colour, alpha=0.2)
        depths = sorted(sub["depth"].unique())
        axis_scale(ax, depths, "x", "image depth (layers)")
        ax.set_xticks(depths, [str(d) for d in depths])
        axis_scale(ax, sub.loc[(sub["step"] == step) & (sub["cache"] == cache), "seconds"] * 1000, "y", "ms")
        ax.set_title(panel_title(step, "", cache), fontsize=9)
    band = Line2D([], [], color="grey", marker="o", label="median, band: 95% CI (n < 6: min-max)")
    finish(fig, "rootfs against image depth: repetitions, median and 95% CI", caption(sub, runs), labels, [band])
    return fig


def cdf_figure(rows: pd.DataFrame, scenario: str, runs: list[dict]) -> plt.Figure | None:
    """The whole distribution per step: an empirical CDF per driver (tails, modes, outliers)."""
    chosen = step_panels(rows, scenario)
    if chosen is None:
        return None
    sub, note, labels, panels = chosen
    fig, axes = new_figure(len(panels))
    for ax, (step, execdriver, cache) in zip(axes, panels, strict=True):
        panel = sub[(sub["step"] == step) & (sub["execdriver"] == execdriver) & (sub["cache"] == cache)]
        for label in labels:
            values = finite(panel.loc[panel["driver"] == label, "seconds"]) * 1000
            if len(values):
                ax.ecdf(values, color=palette.colour(label), linestyle=palette.dash(label, labels))
        axis_scale(ax, panel["seconds"] * 1000, "x", "ms")
        ax.set_ylabel("fraction of repetitions <= x")
        ax.set_title(panel_title(step, execdriver, cache), fontsize=9)
    finish(fig, f"{scenario}: distribution per step (empirical CDF)", caption(sub, runs, note), labels)
    return fig


def space_figure(rows: pd.DataFrame, runs: list[dict]) -> plt.Figure | None:
    """Space amplification of the layer chain per driver (a ratio near 1: linear axis)."""
    sub = rows[(rows["scenario"] == "layer-create") & (rows["layer"] == -1) & rows["space_amplification"].notna()]
    if sub.empty:
        return None
    labels = sorted(sub["driver"].unique())
    workloads = sorted(sub["workload"].unique())
    fig, axes = new_figure(len(workloads), width=max(3.4, 0.9 * len(labels) + 1))
    for ax, workload in zip(axes, workloads, strict=True):
        ticks = []
        for i, label in enumerate(labels):
            values = finite(sub.loc[(sub["workload"] == workload) & (sub["driver"] == label), "space_amplification"])
            ticks.append(f"{label}\nn={len(values)}")
            if len(values):
                ax.scatter(np.full(len(values), i), values, s=12, alpha=0.6, color=palette.colour(label))
                med, (low, high) = float(np.median(values)), median_ci(values)
                ax.plot([i - 0.3, i + 0.3], [med] * 2, color="black", linewidth=2)
                if np.isfinite(low):
                    ax.errorbar([i], [med], yerr=[[med - low], [high - med]], fmt="none", color="black", capsize=5)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(labels)), ticks, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("backing fs bytes used / bytes of file data")
        ax.set_title(f"workload {workload}", fontsize=9)
    median = Line2D([], [], color="black", linewidth=2, label="median, CI (bench.stats)")
    finish(fig, "space amplification of the layer chain", caption(sub, runs), labels, [median])
    return fig


def layer_space_figure(rows: pd.DataFrame, runs: list[dict]) -> plt.Figure | None:
    """Space each layer of the chain takes against its depth (issue 14: not only the chain
    total), beside the bytes of file data the layer itself adds: a driver that copies what is
    below (vfs) climbs with depth, a copy-on-write one follows the data line."""
    sub = rows[(rows["scenario"] == "layer-create") & (rows["step"] == "create+apply_diff") & (rows["layer"] >= 0)]
    sub = sub[sub["space_used"].notna()]
    if sub.empty or sub["depth"].max() < 2:  # one layer: nothing to draw against depth
        return None
    labels = sorted(sub["driver"].unique())
    workloads = sorted(sub["workload"].unique())
    fig, axes = new_figure(len(workloads), width=4.2, height=3.4)
    rng = np.random.default_rng(0)
    for ax, workload in zip(axes, workloads, strict=True):
        panel = sub[sub["workload"] == workload]
        for label in labels:
            points = panel[panel["driver"] == label]
            if points.empty:
                continue
            colour = palette.colour(label)
            kib = points["space_used"].astype("float64") / 1024
            ax.scatter(points["depth"] + rng.uniform(-0.15, 0.15, len(points)), kib, s=6, alpha=0.35, color=colour)
            medians = kib.groupby(points["depth"]).median()
            ax.plot(medians.index, medians.values, marker="o", markersize=4, color=colour,
                    linestyle=palette.dash(label, labels), label=label)  # fmt: skip
        data = (panel["bytes"].astype("float64") / 1024).groupby(panel["depth"]).median()
        ax.plot(data.index, data.values, color="grey", linestyle="--", linewidth=1, label="file data")
        axis_scale(ax, pd.concat([panel["space_used"].astype("float64") / 1024, data]), "y", "KiB used by the layer")
        ax.set_xlabel("layer depth (1 = bottom)")
        ax.set_title(f"workload {workload}", fontsize=9)
    data_handle = Line2D([], [], color="grey", linestyle="--", label="file data in the layer")
    finish(fig, "space per layer against depth: repetitions and median", caption(sub, runs), labels, [data_handle])
    return fig

"""`bench report DIR... --out DIR`: PNG figures and an index.html with the summary table.

Figures: one per scenario (drivers side by side, bars at the median with 95% CI error
bars), rootfs assembly against image depth, and space amplification per driver. When
several result directories hold the same driver, each run is labelled with its run id.
"""

from __future__ import annotations

import html
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import results
from .table import summary


def _bars(ax: plt.Axes, stats: pd.DataFrame, xkey: str, title: str) -> None:
    xs = list(dict.fromkeys(stats[xkey]))
    drivers = list(dict.fromkeys(stats["driver"]))
    width = 0.8 / max(len(drivers), 1)
    for i, driver in enumerate(drivers):
        sub = stats[stats["driver"] == driver].set_index(xkey).reindex(xs)
        med = sub["median"].to_numpy(dtype=float) * 1000
        err = np.vstack(
            [med - sub["ci_low"].to_numpy(dtype=float) * 1000, sub["ci_high"].to_numpy(dtype=float) * 1000 - med]
        )
        pos = np.arange(len(xs)) + (i - (len(drivers) - 1) / 2) * width
        ax.bar(pos, med, width, yerr=np.nan_to_num(err), capsize=3, label=driver)
    ax.set_xticks(np.arange(len(xs)), xs, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")  # steps range from microseconds to seconds
    ax.set_ylabel("ms (median, 95% CI; log scale)")
    ax.set_title(title)
    ax.legend(fontsize=8)


def scenario_figures(stats: pd.DataFrame, out: str) -> list[str]:
    made = []
    for scenario in ("layer-create", "rootfs", "exec"):
        sub = stats[(stats["scenario"] == scenario) & (stats["n"] > 0)]
        if sub.empty:
            continue
        if scenario == "rootfs":
            sub = sub[sub["depth"] == sub["depth"].max()]
        sub = sub.assign(x=sub["step"] + np.where(sub["execdriver"] != "", " [" + sub["execdriver"] + "]", ""))
        sub = sub.assign(x=sub["x"] + np.where(sub["cache"] != "warm", " (" + sub["cache"] + ")", ""))
        fig, ax = plt.subplots(figsize=(10, 5))
        depth_note = f" (depth {int(sub['depth'].max())})" if scenario == "rootfs" else ""
        _bars(ax, sub, "x", f"{scenario}{depth_note}: drivers side by side")
        fig.tight_layout()
        name = f"scenario_{scenario}.png"
        fig.savefig(os.path.join(out, name), dpi=100)
        plt.close(fig)
        made.append(name)
    return made


def depth_figure(stats: pd.DataFrame, out: str) -> str | None:
    sub = stats[(stats["scenario"] == "rootfs") & (stats["n"] > 0)]
    if sub.empty:
        return None
    steps = ["create_read_write+get", "put", "remove"]
    fig, axes = plt.subplots(1, len(steps), figsize=(14, 4.5))
    for ax, step in zip(axes, steps, strict=True):
        for (driver, cache), g in sub[sub["step"] == step].groupby(["driver", "cache"]):
            g = g.sort_values("depth")
            ax.plot(g["depth"], g["median"] * 1000, marker="o", label=f"{driver} ({cache})")
            ax.fill_between(g["depth"], g["ci_low"] * 1000, g["ci_high"] * 1000, alpha=0.2)
        ax.set_xlabel("image depth (layers)")
        ax.set_ylabel("ms (median, 95% CI)")
        ax.set_title(f"rootfs {step}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    name = "rootfs_vs_depth.png"
    fig.savefig(os.path.join(out, name), dpi=100)
    plt.close(fig)
    return name


def space_figure(df: pd.DataFrame, out: str) -> str | None:
    sub = df[(df["scenario"] == "layer-create") & (df["layer"] == -1) & df["space_amplification"].notna()]
    if sub.empty:
        return None
    med = sub.groupby(["workload", "driver"])["space_amplification"].median().unstack("driver")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    med.plot.bar(ax=ax, rot=0)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("backing fs bytes used / bytes of file data")
    ax.set_title("space amplification of the layer chain (median)")
    fig.tight_layout()
    name = "space_amplification.png"
    fig.savefig(os.path.join(out, name), dpi=100)
    plt.close(fig)
    return name


def _html(dirs: list[str], figures: list[str], stats: pd.DataFrame) -> str:
    runs = []
    for d in dirs:
        run = results.load_run(d)
        m = run.get("machine", {})
        runs.append(
            f"<li><b>{html.escape(str(run.get('run_id')))}</b>: {html.escape(str(run.get('command_line')))} -- "
            f"{html.escape(str(m.get('cpu_model')))}, {m.get('cores')} cores, "
            f"kernel {html.escape(str(m.get('kernel')))}, "
            f"commit {html.escape(str(run.get('git_commit')))}</li>"
        )
        for w in run.get("warnings", []):
            runs.append(f"<li class=warn>warning: {html.escape(str(w))}</li>")
    table = stats.assign(
        median_ms=stats["median"] * 1000,
        ci_low_ms=stats["ci_low"] * 1000,
        ci_high_ms=stats["ci_high"] * 1000,
        iqr_ms=stats["iqr"] * 1000,
    )[
        [
            "driver",
            "backend",
            "backing_fs",
            "scenario",
            "step",
            "workload",
            "depth",
            "cache",
            "execdriver",
            "n",
            "median_ms",
            "iqr_ms",
            "ci_low_ms",
            "ci_high_ms",
            "vs_fastest",
            "space_amplification",
            "wide",
            "note",
        ]
    ]
    imgs = "\n".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(f)}"></figure>' for f in figures)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>strata bench report</title>
<style>body{{font-family:sans-serif;margin:2em}} img{{max-width:100%}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} .warn{{color:#a60}}</style></head>
<body><h1>strata bench report</h1>
<h2>Runs</h2><ul>{"".join(runs)}</ul>
<h2>Figures</h2>{imgs}
<h2>Summary (medians, IQR and bootstrap 95% CI in ms; wide = spread too large to compare)</h2>
{table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")}
</body></html>
"""


def report(dirs: list[str], out: str) -> int:
    try:
        df = results.label_runs(results.load(dirs))
    except results.ResultsError as exc:
        print(f"bench report: {exc}")
        return 2
    os.makedirs(out, exist_ok=True)
    stats = summary(df)
    figures = scenario_figures(stats, out)
    figures += [f for f in (depth_figure(stats, out), space_figure(df, out)) if f]
    stats.to_csv(os.path.join(out, "summary.csv"), index=False)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(_html(dirs, figures, stats))
    print(f"report: {os.path.join(out, 'index.html')} ({len(figures)} figures)")
    return 0

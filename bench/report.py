"""`bench report DIR... --out DIR`: figures (PNG and PDF), summaries and an index.html.

Figures (bench.figures): per scenario every repetition with the median and its CI, rootfs
against image depth, an empirical CDF per step, space amplification, and the space each
layer takes against its depth. When several
result directories hold the same driver, each run is its own series, labelled with its
run id, so nothing is pooled across runs. Rows from several hosts (a cluster run) get one
set of figures per host (`NAME_HOST.png`), each captioned with that host's machine.
summary.csv/.txt/.md/.tex as in a run directory.
"""

from __future__ import annotations

import html
import logging
import os

import matplotlib

matplotlib.use("Agg")  # files only; bench.figures itself leaves the backend to its caller (a notebook)
import matplotlib.pyplot as plt
import pandas as pd

from . import figures, results
from .scenarios import SCENARIOS
from .table import summary, write_summaries

log = logging.getLogger(__name__)


def save(fig: plt.Figure, out: str, name: str) -> str:
    """PNG for the page, PDF (vector) for the paper; returns the PNG's name."""
    for ext, dpi in (("png", 150), ("pdf", None)):
        fig.savefig(os.path.join(out, f"{name}.{ext}"), dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return f"{name}.png"


def draw(df: pd.DataFrame, stats: pd.DataFrame, runs: list[dict], out: str, suffix: str = "") -> list[str]:
    """Every figure of the report, saved under `out`; the PNG names in page order."""
    wanted: list[tuple[str, plt.Figure | None]] = []
    for scenario in SCENARIOS:
        wanted.append((f"scenario_{scenario}", figures.scenario_figure(df, stats, scenario, runs)))
    wanted.append(("rootfs_vs_depth", figures.depth_figure(df, stats, runs)))
    for scenario in SCENARIOS:
        wanted.append((f"cdf_{scenario}", figures.cdf_figure(df, scenario, runs)))
    wanted.append(("space_amplification", figures.space_figure(df, runs)))
    wanted.append(("layer_space_vs_depth", figures.layer_space_figure(df, runs)))
    return [save(fig, out, name + suffix) for name, fig in wanted if fig is not None]


def facets(raw: pd.DataFrame, runs: list[dict]) -> list[tuple[str, pd.DataFrame, list[dict]]]:
    """One facet per host when the rows come from several (a cluster run): its rows, and the
    runs with that host's machine for the captions; else one facet of everything."""
    hosts = sorted(set(raw["host"].dropna()) - {""})
    if len(hosts) < 2:
        return [("", raw, runs)]
    return [
        (
            host,
            raw[raw["host"] == host],
            [{**r, "machine": r["hosts"][host]["machine"]} if host in r.get("hosts", {}) else r for r in runs],
        )
        for host in hosts
    ]


def _html(runs_json: list[dict], pngs: list[str], stats: pd.DataFrame) -> str:
    runs = []
    for run in runs_json:
        m = run.get("machine", {})
        runs.append(
            f"<li><b>{html.escape(str(run.get('run_id')))}</b>: {html.escape(str(run.get('command_line')))} -- "
            f"{html.escape(str(m.get('cpu_model')))}, {m.get('cores')} cores, "
            f"kernel {html.escape(str(m.get('kernel')))}, "
            f"commit {html.escape(str(run.get('git_commit')))}</li>"
        )
        for name, h in (run.get("hosts") or {}).items():
            hm = h.get("machine", {})
            runs.append(
                f"<li>host <b>{html.escape(name)}</b>: {html.escape(str(hm.get('cpu_model')))}, {hm.get('cores')} "
                f"cores, kernel {html.escape(str(hm.get('kernel')))}, "
                f"workers {html.escape(', '.join(h.get('workers', [])))}</li>"
            )
        for w in run.get("warnings", []):
            runs.append(f"<li class=warn>warning: {html.escape(str(w))}</li>")
    table = stats.assign(
        median_ms=stats["median"] * 1000,
        ci_low_ms=stats["ci_low"] * 1000,
        ci_high_ms=stats["ci_high"] * 1000,
        iqr_ms=stats["iqr"] * 1000,
        p90_ms=stats["p90"] * 1000,
        p99_ms=stats["p99"] * 1000,
    )[
        [
            "host",
            "system",
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
            "p90_ms",
            "p99_ms",
            "ci_low_ms",
            "ci_high_ms",
            "vs_fastest",
            "vs_floor",
            "space_amplification",
            "wide",
            "note",
        ]
    ]
    imgs = "\n".join(
        f'<figure><img src="{html.escape(f)}" alt="{html.escape(f)}">'
        f'<figcaption><a href="{html.escape(f[:-4])}.pdf">PDF</a></figcaption></figure>'
        for f in pngs
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>strata bench report</title>
<style>body{{font-family:sans-serif;margin:2em}} img{{max-width:100%}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} .warn{{color:#a60}}</style></head>
<body><h1>strata bench report</h1>
<h2>Runs</h2><ul>{"".join(runs)}</ul>
<h2>Figures</h2>{imgs}
<h2>Summary (medians, IQR, p90/p99 where n supports them, bootstrap 95% CI in ms;
wide = median too uncertain to compare)</h2>
<p>Also as <a href="summary.csv">CSV</a>, <a href="summary.md">Markdown</a>, <a href="summary.tex">LaTeX</a>.</p>
{table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")}
</body></html>
"""


SERIES_KEYS = ["run_id", "host", "system", "driver", "options", "backend", "backing_fs", "workload"]


def _labelled(stats: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """The summary computed by the rows' own driver names (so a floor meets its driver's rows,
    which the series labels would part), shown with each series' label (`vfs on h2`, `@run`)."""
    names = raw[SERIES_KEYS].assign(label=results.label_runs(raw)["driver"]).drop_duplicates(SERIES_KEYS)
    shown = stats.merge(names, how="left", on=SERIES_KEYS)
    return shown.assign(driver=shown["label"].fillna(shown["driver"])).drop(columns="label")


def report(dirs: list[str], out: str) -> int:
    try:
        raw = results.load(dirs)
    except results.ResultsError as exc:
        print(f"bench report: {exc}")
        return 2
    os.makedirs(out, exist_ok=True)
    runs = [results.load_run(d) for d in dirs]
    pngs = []
    for host, rows, host_runs in facets(raw, runs):
        labelled = results.label_runs(rows)
        pngs += draw(labelled, summary(labelled), host_runs, out, suffix=f"_{host}" if host else "")
    stats = _labelled(summary(raw), raw)
    write_summaries(stats, out)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(_html(runs, pngs, stats))
    print(f"report: {os.path.join(out, 'index.html')} ({len(pngs)} figures, PNG and PDF)")
    return 0

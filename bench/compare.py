"""`bench compare BASE NEW [--fail-above R]`: per group, median(NEW) / median(BASE) with a
bootstrap 95% CI. A group fails (exit 1) only when it is slower past the threshold AND
beyond noise: its ratio is above R and the whole CI of the ratio lies above 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from . import results
from .stats import ratio_ci

KEYS = ["driver", "backend", "scenario", "step", "workload", "layer", "depth", "cache", "execdriver"]


def ratios(base: pd.DataFrame, new: pd.DataFrame, fail_above: float) -> pd.DataFrame:
    out = []
    new_groups = {k: g for k, g in new.groupby(KEYS, dropna=False)}
    for key, b in base.groupby(KEYS, dropna=False):
        n = new_groups.get(key)
        if n is None:
            continue
        bv = b["seconds"].to_numpy(dtype=float, na_value=np.nan)
        nv = n["seconds"].to_numpy(dtype=float, na_value=np.nan)
        bv, nv = bv[np.isfinite(bv)], nv[np.isfinite(nv)]
        if len(bv) == 0 or len(nv) == 0:
            continue
        bm, nm = float(np.median(bv)), float(np.median(nv))
        ratio = nm / bm if bm > 0 else float("inf")
        low, high = ratio_ci(bv, nv)
        slower = bool(ratio > fail_above and low > 1.0)
        out.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                "base_median": bm,
                "new_median": nm,
                "ratio": ratio,
                "ci_low": low,
                "ci_high": high,
                "regressed": slower,
            }
        )
    return pd.DataFrame(out, columns=[*KEYS, "base_median", "new_median", "ratio", "ci_low", "ci_high", "regressed"])


def context_differences(base: dict, new: dict) -> list[str]:
    """What besides the code differs between two runs (machine, software, settings)."""
    checks = [
        ("machine", "cpu_model"),
        ("machine", "cores"),
        ("machine", "memory_bytes"),
        ("machine", "kernel"),
        ("config", "workload"),
        ("config", "image"),
        ("config", "quick"),
        ("config", "backing"),
        ("config", "repeat"),
        ("config", "warmup"),
    ]
    out = []
    for section, key in checks:
        a, b = base.get(section, {}).get(key), new.get(section, {}).get(key)
        if a != b:
            out.append(f"{section}.{key}: {a!r} -> {b!r}")
    for name in sorted(set(base.get("packages", {})) & set(new.get("packages", {}))):
        if base["packages"][name] != new["packages"][name]:
            out.append(f"package {name}: {base['packages'][name]} -> {new['packages'][name]}")
    return out


def compare(base_dir: str, new_dir: str, fail_above: float) -> int:
    try:
        base, new = results.load([base_dir]), results.load([new_dir])
    except results.ResultsError as exc:
        print(f"bench compare: {exc}")
        return 2
    base = base[(base["scenario"] != "layer-create") | (base["layer"] == -1)]
    new = new[(new["scenario"] != "layer-create") | (new["layer"] == -1)]
    table = ratios(base, new, fail_above)
    if table.empty:
        print("bench compare: the two runs have no measured group in common")
        return 2
    t = Table(title=f"median NEW/BASE (fail above {fail_above} when beyond noise)")
    for col in ("driver", "scenario", "step", "depth", "cache", "exec", "base ms", "new ms", "ratio", "95% CI", ""):
        t.add_column(col)
    for r in table.itertuples(index=False):
        t.add_row(
            r.driver,
            r.scenario,
            r.step,
            str(r.depth),
            r.cache,
            r.execdriver or "-",
            f"{r.base_median * 1000:.2f}",
            f"{r.new_median * 1000:.2f}",
            f"{r.ratio:.2f}",
            f"{r.ci_low:.2f}..{r.ci_high:.2f}",
            "[bold red]SLOWER[/]" if r.regressed else "",
        )
    Console(width=200).print(t)
    for difference in context_differences(results.load_run(base_dir), results.load_run(new_dir)):
        print(f"warning: the runs differ in more than the code: {difference}")
    regressed = table[table["regressed"]]
    if len(regressed):
        print(f"{len(regressed)} group(s) got slower than {fail_above}x beyond noise")
        return 1
    return 0

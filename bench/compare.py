"""`bench compare BASE NEW` (or `--split RUN`): which groups really changed between two runs.

Per group a two-sided Mann-Whitney U test (rank based: no normality assumed, robust to the
odd slow outlier), then Benjamini-Hochberg false-discovery-rate control across all groups,
because ~100 groups tested at 5% each would flag several by chance alone. A group is
SLOWER (FASTER) only when it is significant after that correction AND its median ratio is
beyond `--fail-above` (below its inverse): a real change too small to matter is not a
regression, and a large ratio from five noisy values is not evidence. Everything that
differs besides the code is listed first; a different workload or machine is refused.
`--split RUN` compares the even and odd repetitions of one run: an A/A check of the rule.

The test's unit is a repetition, so a change of the whole machine between two runs (load
from others on a shared host) is a real difference to it. Such a change moves every driver
of a scenario together; compare prints each scenario's median ratio over its groups and
warns when one moved as a whole, so that a reader does not blame one driver's code for it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from scipy import stats as sps

from . import results, rundiff
from .stats import finite, ratio_ci

log = logging.getLogger(__name__)

KEYS = ["host", "driver", "backend", "scenario", "step", "workload", "layer", "depth", "cache", "execdriver"]
ALPHA = 0.05  # false discovery rate
SHIFT = 1.1  # a scenario whose groups moved by more than this together: the machine, not one driver
EXIT_SAME, EXIT_SLOWER, EXIT_REFUSED = 0, 1, 2
COLUMNS = [
    *KEYS,
    "n_base",
    "n_new",
    "base_median",
    "new_median",
    "ratio",
    "ci_low",
    "ci_high",
    "p",
    "q",
    "verdict",
]


@dataclass(frozen=True)
class Sides:
    """The rows of the two sides being compared and their run.json records."""

    base: pd.DataFrame
    new: pd.DataFrame
    base_run: dict
    new_run: dict
    base_label: str
    new_label: str


def timed(df: pd.DataFrame) -> pd.DataFrame:
    """The rows compared: chain totals of layer-create, every row of the other scenarios."""
    return df[(df["scenario"] != "layer-create") | (df["layer"] == -1)]


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Even and odd repetitions of one run: two samples that differ in nothing but noise."""
    even = df["repetition"] % 2 == 0
    return df[even], df[~even]


def smallest_p(n_base: int, n_new: int) -> float:
    """The smallest p-value Mann-Whitney U can give for these sample sizes (full separation)."""
    return float(sps.mannwhitneyu(np.arange(n_base), np.arange(n_base, n_base + n_new)).pvalue)


def _verdict(q: float, ratio: float, fail_above: float, alpha: float) -> str:
    if not q < alpha:
        return "same"
    if ratio > fail_above:
        return "SLOWER"
    if ratio < 1 / fail_above:
        return "FASTER"
    return "small change"


def group_tests(base: pd.DataFrame, new: pd.DataFrame, fail_above: float, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per group measured on both sides: n, medians, ratio with CI, p, BH q, verdict."""
    out = []
    new_groups = {k: g for k, g in new.groupby(KEYS, dropna=False)}
    for key, b in base.groupby(KEYS, dropna=False):
        if key not in new_groups:
            continue
        bv, nv = finite(b["seconds"]), finite(new_groups[key]["seconds"])
        if len(bv) == 0 or len(nv) == 0:
            continue
        bm, nm = float(np.median(bv)), float(np.median(nv))
        low, high = ratio_ci(bv, nv)
        p = float(sps.mannwhitneyu(nv, bv, alternative="two-sided").pvalue)
        out.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                "n_base": len(bv),
                "n_new": len(nv),
                "base_median": bm,
                "new_median": nm,
                "ratio": nm / bm if bm > 0 else math.inf,
                "ci_low": low,
                "ci_high": high,
                "p": 1.0 if math.isnan(p) else p,  # no ranks to tell apart: no evidence
            }
        )
    table = pd.DataFrame(out, columns=COLUMNS)
    if table.empty:
        return table
    table["q"] = sps.false_discovery_control(table["p"].to_numpy(), method="bh")
    table["verdict"] = [_verdict(q, r, fail_above, alpha) for q, r in zip(table["q"], table["ratio"], strict=True)]
    return table


def one_sided(base: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Drivers and groups measured on one side only: what the comparison silently cannot see."""
    lines = []
    drivers_b, drivers_n = set(base["driver"]), set(new["driver"])
    for side, mine, theirs in (("BASE", drivers_b, drivers_n), ("NEW", drivers_n, drivers_b)):
        lines += [f"driver {d} only in {side}" for d in sorted(mine - theirs)]
    common = drivers_b & drivers_n
    keys_b = set(base[base["driver"].isin(common)].groupby(KEYS, dropna=False).groups)
    keys_n = set(new[new["driver"].isin(common)].groupby(KEYS, dropna=False).groups)
    for side, keys in (("BASE", keys_b - keys_n), ("NEW", keys_n - keys_b)):
        for key in sorted(keys, key=str):
            g = dict(zip(KEYS, key, strict=True))
            where = f"{g['host']} " if g["host"] else ""
            lines.append(
                f"group only in {side}: {where}{g['driver']} {g['scenario']} {g['step']} depth {g['depth']} "
                f"{g['cache']} {g['execdriver'] or ''}".rstrip()
            )
    return lines


def common_shifts(table: pd.DataFrame) -> list[str]:
    """Per scenario, the median ratio over its groups; a warning where all drivers moved together."""
    lines = []
    for scenario, g in table.groupby("scenario", sort=False):
        shift = float(np.exp(np.median(np.log(g["ratio"].clip(lower=1e-12)))))
        per_driver = g.groupby("driver")["ratio"].median()
        together = len(per_driver) > 1 and ((per_driver > SHIFT).all() or (per_driver < 1 / SHIFT).all())
        line = f"{scenario}: median ratio {shift:.2f} over {len(g)} groups"
        if together:
            line += (
                f" -- every driver moved ({', '.join(f'{d} {r:.2f}' for d, r in per_driver.items())}): "
                "likely the machine (load between runs) or something all drivers share, not one driver's code"
            )
        lines.append(line)
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def _render(table: pd.DataFrame, fail_above: float, alpha: float) -> Table:
    t = Table(title=f"median NEW/BASE: Mann-Whitney U, Benjamini-Hochberg q < {alpha}, beyond {fail_above}x")
    columns = ["host", "driver", "scenario", "step", "depth", "cache", "exec", "n", "base ms", "new ms", "ratio"]
    for col in [*columns, "95% CI"]:
        t.add_column(col, justify="right" if col in ("depth", "base ms", "new ms", "ratio") else "left")
    for col in ("p", "q", "verdict"):
        t.add_column(col, justify="right" if col != "verdict" else "left")
    style = {"SLOWER": "[bold red]SLOWER[/]", "FASTER": "[bold green]FASTER[/]"}
    for r in table.itertuples(index=False):
        t.add_row(
            r.host or "-",
            r.driver,
            r.scenario,
            r.step,
            str(r.depth),
            r.cache,
            r.execdriver or "-",
            f"{r.n_base}/{r.n_new}",
            _ms(r.base_median),
            _ms(r.new_median),
            f"{r.ratio:.2f}",
            f"{r.ci_low:.2f}..{r.ci_high:.2f}",
            f"{r.p:.3g}",
            f"{r.q:.3g}",
            style.get(r.verdict, r.verdict),
        )
    return t


def host_sides(run_dir: str, base_host: str, new_host: str) -> Sides:
    """Two hosts of one run (`--hosts`): each side its host's rows, and run.json with that
    host's machine and packages, so what differs between the machines is listed."""
    df = timed(results.load([run_dir]))
    run = results.load_run(run_dir)
    known = run.get("hosts") or {}
    sides = []
    for host in (base_host, new_host):
        if host not in known:
            raise results.ResultsError(f"{run_dir}: no host {host} (hosts: {', '.join(sorted(known)) or 'none'})")
        facts = known[host]
        record = {**run, "machine": facts.get("machine", {}), "packages": facts.get("packages", {})}
        sides.append((df[df["host"] == host].assign(host=""), record, f"{run_dir} on {host}"))
    (base, base_run, base_label), (new, new_run, new_label) = sides
    return Sides(base, new, base_run, new_run, base_label, new_label)


def _same_hosts(base: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two runs compare host by host; two one-host runs on different hosts compare as
    machines (that difference is listed, and refused unless allowed, like any machine's)."""
    hosts_b, hosts_n = set(base["host"].dropna()), set(new["host"].dropna())
    if hosts_b == hosts_n:
        return base, new
    if len(hosts_b) <= 1 and len(hosts_n) <= 1:
        return base.assign(host=""), new.assign(host="")
    raise results.ResultsError(
        f"the runs measured different hosts ({', '.join(sorted(hosts_b))} vs {', '.join(sorted(hosts_n))}): "
        "compare runs of the same hosts, or two hosts of one run with --hosts"
    )


def load_sides(base_dir: str | None, new_dir: str | None, split_dir: str | None) -> Sides:
    """Both sides from two result directories, or the halves of one (`--split`)."""
    if split_dir is not None:
        df = timed(results.load([split_dir]))
        run = results.load_run(split_dir)
        even, odd = split(df)
        return Sides(even, odd, run, run, f"{split_dir} (even repetitions)", f"{split_dir} (odd repetitions)")
    assert base_dir is not None and new_dir is not None
    base, new = _same_hosts(timed(results.load([base_dir])), timed(results.load([new_dir])))
    return Sides(
        base,
        new,
        results.load_run(base_dir),
        results.load_run(new_dir),
        base_dir,
        new_dir,
    )


def compare(
    base_dir: str | None,
    new_dir: str | None,
    fail_above: float,
    *,
    split_dir: str | None = None,
    hosts: tuple[str, str] | None = None,
    allow_different: bool = False,
    alpha: float = ALPHA,
) -> int:
    """Print what differs, the per-group table and the verdict; the exit status says it.
    With `hosts`, `base_dir` is one run and its two hosts are the sides: their machines
    differ by design, so that is listed but not refused."""
    try:
        sides = host_sides(base_dir, *hosts) if hosts else load_sides(base_dir, new_dir, split_dir)  # type: ignore[arg-type]
        found = rundiff.differences(sides.base_run, sides.new_run)
        rundiff.check_comparable(found, allow_different or hosts is not None)
    except (results.ResultsError, OSError) as exc:
        print(f"bench compare: {exc}")
        return EXIT_REFUSED
    except rundiff.IncomparableRuns as exc:
        print(f"bench compare: refused: {exc}")
        return EXIT_REFUSED
    print(f"BASE: {sides.base_label}\nNEW:  {sides.new_label}")
    notes = [f"differs: {d}" for d in found] + one_sided(sides.base, sides.new)
    for line in notes or ["same configuration, machine and software; same drivers and groups on both sides"]:
        print(f"  {line}")
    table = group_tests(sides.base, sides.new, fail_above, alpha)
    if table.empty:
        print("bench compare: the two runs have no measured group in common")
        return EXIT_REFUSED
    Console(width=220).print(_render(table, fail_above, alpha))
    sizes = zip(table["n_base"], table["n_new"], strict=True)
    blind = table[[smallest_p(a, b) * len(table) >= alpha for a, b in sizes]]
    if len(blind):
        print(
            f"note: {len(blind)} of {len(table)} groups have too few repetitions to show a change of theirs "
            f"alone as significant after correcting for {len(table)} tests (e.g. n={blind['n_base'].iloc[0]}/"
            f"{blind['n_new'].iloc[0]}); rerun with --repeat auto or a larger --repeat"
        )
    for line in common_shifts(table):
        print(("warning: " if "every driver moved" in line else "shift: ") + line)
    counts = table["verdict"].value_counts()
    slower, faster = int(counts.get("SLOWER", 0)), int(counts.get("FASTER", 0))
    print(f"{slower} SLOWER, {faster} FASTER, {len(table) - slower - faster} no difference beyond {fail_above}x")
    if slower:
        print(f"{slower} group(s) got slower than {fail_above}x beyond noise")
        return EXIT_SLOWER
    print("no difference" if not faster else "no group got slower")
    return EXIT_SAME

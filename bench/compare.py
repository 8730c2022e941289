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
from others on a shared host) would be a real difference to it: two identical runs made
minutes apart on a shared machine differ by 10-20% in process start-up for every driver.
Such a change moves a whole scenario together, so by default each group is judged on its
own change: its ratio divided by its scenario's common shift, tested on the NEW values
scaled by that shift. A shift is only a shift when most groups moved together: the
shift is the geometric median of the ratios of the largest set of groups whose ratio CIs
share a point, when that set is more than half of the scenario; else there is no common
shift (1) and the groups are judged raw, so that when half the drivers changed the
untouched half is not pushed the other way. A group is never SLOWER or FASTER
on its own change unless its raw change is significant in the same direction. The shift
itself is judged once per scenario: it fails only when it is beyond `--fail-above` and
most of the scenario's groups moved significantly the same way -- then compare says it
cannot tell the machine from code every driver shares. `--absolute` judges raw ratios.
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

from . import results, rundiff, variants
from .stats import finite, ratio_ci

log = logging.getLogger(__name__)

KEYS = results.GROUP_KEYS  # strata, a peer and the floor, and each backing filesystem, are their own groups
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
    "raw_q",
    "shift",
    "own",
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
    """The rows compared: chain totals of layer-create, every row of the other scenarios
    (a driver variant's rows under its own label)."""
    return variants.labelled(df[(df["scenario"] != "layer-create") | (df["layer"] == -1)])


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


def _q(p: list[float]) -> np.ndarray:
    return sps.false_discovery_control(np.asarray(p, dtype=float), method="bh")


def _geometric_median(ratios: pd.Series) -> float:
    return float(np.exp(np.median(np.log(ratios.clip(lower=1e-12)))))


@dataclass(frozen=True)
class Shift:
    """A scenario's common shift: the geometric median of all its ratios (for the record),
    the most groups whose ratio CIs share a point, and the shift divided out -- the geometric
    median of those groups' ratios when they are more than half of the scenario, else 1
    (no common movement to remove)."""

    median: float
    agreeing: int
    groups: int
    value: float

    @property
    def common(self) -> bool:
        return 2 * self.agreeing > self.groups


def scenario_shift(g: pd.DataFrame) -> Shift:
    """The common shift of one scenario's groups (rows with ratio, ci_low, ci_high): the
    largest set of groups that agree on one ratio within their CIs."""
    low, high = g["ci_low"].to_numpy(dtype=float), g["ci_high"].to_numpy(dtype=float)
    best = np.zeros(len(g), dtype=bool)
    for point in low[np.isfinite(low)]:  # the most intervals overlap at some interval's lower end
        members = (low <= point) & (point <= high)
        if members.sum() > best.sum():
            best = members
    agreeing = int(best.sum())
    value = _geometric_median(g["ratio"][best]) if 2 * agreeing > len(g) else 1.0
    return Shift(_geometric_median(g["ratio"]), agreeing, len(g), value)


def group_tests(
    base: pd.DataFrame, new: pd.DataFrame, fail_above: float, alpha: float = ALPHA, *, absolute: bool = False
) -> pd.DataFrame:
    """One row per group measured on both sides: n, medians, ratio with CI, the raw BH q,
    its scenario's common shift, its own change (ratio / shift) with p and BH q, verdict."""
    pairs = []
    new_groups = {k: g for k, g in new.groupby(KEYS, dropna=False)}
    for key, b in base.groupby(KEYS, dropna=False):
        if key not in new_groups:
            continue
        bv, nv = finite(b["seconds"]), finite(new_groups[key]["seconds"])
        if len(bv) and len(nv):
            pairs.append((key, bv, nv))
    if not pairs:
        return pd.DataFrame([], columns=COLUMNS)
    rows = []
    for key, bv, nv in pairs:
        bm, nm = float(np.median(bv)), float(np.median(nv))
        low, high = ratio_ci(bv, nv)
        rows.append({**dict(zip(KEYS, key, strict=True)), "n_base": len(bv), "n_new": len(nv), "base_median": bm,
                     "new_median": nm, "ratio": nm / bm if bm > 0 else math.inf, "ci_low": low, "ci_high": high,
                     "raw_p": _mwu(nv, bv)})  # fmt: skip
    table = pd.DataFrame(rows)
    table["raw_q"] = _q(table["raw_p"].tolist())
    table["shift"] = 1.0
    if not absolute:
        for _, g in table.groupby(["host", "scenario"]):
            table.loc[g.index, "shift"] = scenario_shift(g).value
    table["own"] = table["ratio"] / table["shift"]
    table["p"] = [_mwu(nv / shift, bv) for (_, bv, nv), shift in zip(pairs, table["shift"], strict=True)]
    table["q"] = _q(table["p"].tolist())
    table["verdict"] = [
        _own_verdict(_verdict(q, own, fail_above, alpha), raw_q, ratio, alpha)
        for q, own, raw_q, ratio in zip(table["q"], table["own"], table["raw_q"], table["ratio"], strict=True)
    ]
    return table[COLUMNS]


def _own_verdict(verdict: str, raw_q: float, ratio: float, alpha: float) -> str:
    """An own change counts only when the raw change is significant the same way: dividing
    out a shift never makes an unmoved group SLOWER or FASTER."""
    if verdict not in ("SLOWER", "FASTER"):
        return verdict
    same_way = ratio > 1 if verdict == "SLOWER" else ratio < 1
    return verdict if raw_q < alpha and same_way else "same"


def _mwu(new: np.ndarray, base: np.ndarray) -> float:
    p = float(sps.mannwhitneyu(new, base, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p  # no ranks to tell apart: no evidence


def _where(host: str, scenario: str) -> str:
    return f"{scenario} on {host}" if host else str(scenario)


def scenario_verdicts(table: pd.DataFrame, fail_above: float, alpha: float = ALPHA) -> dict[str, str]:
    """Per scenario, whether the whole scenario moved: SLOWER/FASTER when its common shift is
    beyond `fail_above` and most of its groups moved significantly (raw q) in that direction."""
    out = {}
    for (host, scenario), g in table.groupby(["host", "scenario"], sort=False):
        shift = scenario_shift(g).value
        up = ((g["raw_q"] < alpha) & (g["ratio"] > 1)).sum()
        down = ((g["raw_q"] < alpha) & (g["ratio"] < 1)).sum()
        if shift > fail_above and 2 * up >= len(g):
            out[_where(host, scenario)] = "SLOWER"
        elif shift < 1 / fail_above and 2 * down >= len(g):
            out[_where(host, scenario)] = "FASTER"
        else:
            out[_where(host, scenario)] = "same"
    return out


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
            where += "" if g["system"] == results.STRATA else f"{g['system']} "
            lines.append(
                f"group only in {side}: {where}{g['driver']} {g['scenario']} {g['step']} depth {g['depth']} "
                f"{g['cache']} {g['execdriver'] or ''}".rstrip()
            )
    return lines


def common_shifts(table: pd.DataFrame) -> list[str]:
    """Per scenario, the median ratio over its groups, whether it is a common shift (divided
    out) or not; a warning where all drivers moved together."""
    lines = []
    for (host, scenario), g in table.groupby(["host", "scenario"], sort=False):
        shift = scenario_shift(g)
        per_driver = g.groupby("driver")["ratio"].median()
        together = len(per_driver) > 1 and ((per_driver > SHIFT).all() or (per_driver < 1 / SHIFT).all())
        line = f"{_where(host, scenario)}: median ratio {shift.median:.2f} over {len(g)} groups, "
        line += (
            f"{shift.agreeing} agree on one ratio within their CIs: common shift {shift.value:.2f}"
            if shift.common
            else f"at most {shift.agreeing} agree on one ratio within their CIs: no common shift, "
            "groups judged on raw ratios"
        )
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
    t = Table(title=f"median NEW/BASE; own = ratio / its scenario's shift: Mann-Whitney U on it, "
                    f"Benjamini-Hochberg q < {alpha}, beyond {fail_above}x")
    columns = ["host", "system", "driver", "fs", "scenario", "step", "depth", "cache", "exec", "n", "base ms", "new ms",
               "ratio"]
    for col in [*columns, "95% CI", "own"]:
        t.add_column(col, justify="right" if col in ("depth", "base ms", "new ms", "ratio", "own") else "left")
    for col in ("p", "q", "verdict"):
        t.add_column(col, justify="right" if col != "verdict" else "left")
    style = {"SLOWER": "[bold red]SLOWER[/]", "FASTER": "[bold green]FASTER[/]"}
    for r in table.itertuples(index=False):
        t.add_row(
            r.host or "-",
            r.system,
            r.driver,
            r.backing_fs,
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
            f"{r.own:.2f}",
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
    absolute: bool = False,
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
    table = group_tests(sides.base, sides.new, fail_above, alpha, absolute=absolute)
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
    whole = {} if absolute else scenario_verdicts(table, fail_above, alpha)
    moved = {sc: v for sc, v in whole.items() if v != "same"}
    for scenario, verdict in moved.items():
        print(f"{verdict} (whole scenario): {scenario} moved beyond {fail_above}x for most of its groups -- "
              "the machine or code every driver shares; two runs cannot tell which (measure side by side in one run)")
    counts = table["verdict"].value_counts()
    slower, faster = int(counts.get("SLOWER", 0)), int(counts.get("FASTER", 0))
    print(f"{slower} SLOWER, {faster} FASTER, {len(table) - slower - faster} no difference beyond {fail_above}x"
          + ("" if absolute else " of their scenario's shift"))
    slower_scenarios = [sc for sc, v in moved.items() if v == "SLOWER"]
    if slower or slower_scenarios:
        print(f"{slower} group(s) and {len(slower_scenarios)} whole scenario(s) got slower than {fail_above}x "
              "beyond noise")
        return EXIT_SLOWER
    print("no difference" if not (faster or moved) else "no group got slower")
    return EXIT_SAME

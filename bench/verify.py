"""`bench verify`: the harness checks itself against behaviours papers and Docker's own
documentation report for these drivers.

It makes real `bench run`s (each a subprocess writing a result directory, so what is
checked is exactly what a user's run would record), then judges each behaviour from
those rows: a side that should be slower must have the larger median *and* a one-sided
Mann-Whitney U p-value of at most ALPHA; "grows" and "flat" compare a ratio of medians
with a threshold between the two expectations. A behaviour that does not hold makes the
exit status 1 -- either the harness measures something other than its step names say,
or this machine or kernel behaves unlike the published one; the table says which
numbers. Behaviours about space alone are ordinary tests (tests/bench), not here.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from scipy import stats as sps

from . import results, variants
from .stats import finite
from .workloads import BOTTOM_DATA_BYTES

log = logging.getLogger(__name__)

ALPHA = 0.05
DRIVERS = ("vfs", "overlay2", "btrfs", "aufs", "devmapper")
SERVED = "aufs[fuse_passthrough=false]"  # the FUSE server answers reads itself
SHARES_PAGE_CACHE, OWN_PAGE_CACHE = ("overlay2", "aufs"), ("btrfs", "devmapper")
SMALL_COPYUP, LARGE_COPYUP = 8 << 20, 64 << 20
# exec's bottom data file (the default size): at 128 MiB, devmapper's loop devices twice
# outlived remove's 2 s wait under load 10-40 and the run failed
READ_BYTES = BOTTOM_DATA_BYTES
GROWTH = math.sqrt(LARGE_COPYUP / SMALL_COPYUP)  # between "flat" (1x) and "proportional" (8x)
DEPTHS = (1, 64)
LAZY_SHARE = 0.2  # Slacker: 6.4% of an image is read at start; under 20% is "a small fraction"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class VerifyError(Exception):
    """A run verify needs could not be made (the message says which and why)."""


@dataclass(frozen=True)
class Spec:
    """One `bench run` verify makes, for the drivers the behaviours that need it name
    (`drivers` may hold variants, NAME[KEY=VALUE], interleaved with the driver itself)."""

    name: str
    args: tuple[str, ...]
    drivers: tuple[str, ...]


def specs(quick: bool, repeat: int | None) -> dict[str, Spec]:
    rep = ["--repeat", str(repeat)] if repeat else (["--repeat", "5"] if quick else ["--repeat", "auto"])
    common = ["--quick", *rep] if quick else rep
    exec_args = ["--scenario", "exec", "--execdriver", "oci", *common]
    # io, and exec's cold reads: more repetitions (cold reads from a shared disk are noisy, and
    # in a container ~30 ms of runtime start sits on both sides; n decides the rank test)
    more_rep = rep if repeat or not quick else ["--repeat", "7"]
    io_args = ["--scenario", "io", "--io-runtime", "0.5" if quick else "5", *(["--quick"] if quick else []), *more_rep]
    reads_args = ["--scenario", "exec", "--execdriver", "oci", *(["--quick", *more_rep] if quick else rep)]
    return {
        "exec": Spec(
            "exec",
            (*reads_args, "--cache", "both", "--copyup-bytes", str(SMALL_COPYUP), "--read-bytes", str(READ_BYTES)),
            DRIVERS,
        ),
        "exec-large": Spec(
            "exec-large",
            (*exec_args, "--cache", "warm", "--copyup-bytes", str(LARGE_COPYUP)),
            ("overlay2", "aufs", "btrfs", "devmapper"),
        ),
        "rootfs": Spec(
            "rootfs",
            ("--scenario", "rootfs", "--cache", "warm", "--depths", ",".join(map(str, DEPTHS)), *common),
            ("overlay2", "btrfs"),
        ),
        "io": Spec("io", (*io_args, "--io-jobs", "seqread_1m,randread_4k,randwrite_4k"), ("overlay2", "aufs", SERVED)),
        # the full-size big file even with --quick: a 16 MiB image pulls whole before a lazy start pays off
        "pull-lazy": Spec("pull-lazy", ("--scenario", "pull", "--workload", "big-file", *rep), ("aufs",)),
    }


@dataclass
class Verdict:
    behaviour: str
    source: str
    expected: str
    measured: str
    holds: bool


@dataclass(frozen=True)
class Behaviour:
    key: str
    what: str
    source: str
    expected: str
    runs: tuple[str, ...]
    drivers: tuple[str, ...]
    judge: Callable[[dict[str, pd.DataFrame], tuple[str, ...]], list[tuple[str, bool]]] = field(repr=False)
    variants: tuple[str, ...] = ()  # participants of its runs besides the drivers (SERVED)


def _rows(df: pd.DataFrame, driver: str, step: str, options: str = "", **where: object) -> pd.DataFrame:
    """strata's rows of one driver (its variant with `options`, else its defaults) and step."""
    rows = df[(df["driver"] == driver) & (df["options"].fillna("") == options) & (df["step"] == step)]
    rows = rows[rows["system"] == results.STRATA]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows


def _values(df: pd.DataFrame, driver: str, step: str, options: str = "", **where: object) -> np.ndarray:
    return finite(_rows(df, driver, step, options, **where)["seconds"])


def _cached(rows: pd.DataFrame) -> str:
    """The share of the read file that was in the page cache before each read (median, range)."""
    share = finite(rows["cached_bytes"].astype("float64") / READ_BYTES)
    if not len(share):
        return "cached ?"
    return f"cached {np.median(share):.0%} (range {share.min():.0%}-{share.max():.0%})"


def _ms(values: np.ndarray) -> str:
    if not len(values):
        return "n=0"
    q1, q3 = np.percentile(values, [25, 75])
    return f"{np.median(values) * 1000:.3g} ms (n={len(values)}, IQR {q1 * 1000:.3g}-{q3 * 1000:.3g})"


def slower(slow: np.ndarray, fast: np.ndarray) -> tuple[float, float, bool]:
    """(ratio of medians slow/fast, one-sided Mann-Whitney p, holds: ratio > 1 and p <= ALPHA)."""
    if not len(slow) or not len(fast):
        return math.nan, math.nan, False
    ratio = float(np.median(slow) / np.median(fast))
    p = float(sps.mannwhitneyu(slow, fast, alternative="greater").pvalue)
    return ratio, p, ratio > 1 and p <= ALPHA


def _cold_reads(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    """A cold first read against a warm one: the same read again through the same mount
    (a new container's first read is warm only where the driver shares the image's page
    cache, which `page-cache-sharing` checks). Cold also means none of the file was cached."""
    df = runs["exec"]
    out = []
    for driver in drivers:
        for first, again in (("first_read_bottom", "reread_bottom"),
                             ("read_bottom_in_container", "reread_bottom_in_container")):  # fmt: skip
            cold_rows = _rows(df, driver, first, cache="cold")
            cold, warm = finite(cold_rows["seconds"]), _values(df, driver, again, cache="warm")
            ratio, p, ok = slower(cold, warm)
            untouched = bool(len(cold_rows)) and bool((cold_rows["cached_bytes"].fillna(-1) == 0).all())
            out.append((f"{driver} {first}: cold {_ms(cold)}, {_cached(cold_rows)} / {again} {_ms(warm)} = "
                        f"{ratio:.2f}x, p={p:.3f}", ok and untouched))  # fmt: skip
    return out


def _sharing(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    """How much of the image's data file a new container finds in the page cache (warm)."""
    df, out = runs["exec"], []
    for driver in drivers:
        rows = _rows(df, driver, "first_read_bottom", cache="warm")
        share = finite(rows["cached_bytes"].astype("float64") / READ_BYTES)
        median = float(np.median(share)) if len(share) else math.nan
        ok = median >= 0.9 if driver in SHARES_PAGE_CACHE else median <= 0.1
        first, again = finite(rows["seconds"]), _values(df, driver, "reread_bottom", cache="warm")
        out.append((f"{driver}: new container's first read {_cached(rows)}, {_ms(first)}; "
                    f"re-read {_ms(again)}", ok))  # fmt: skip
    return out


def _growth(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...], grows: tuple[str, ...]) -> list[tuple[str, bool]]:
    out = []
    for driver in drivers:
        small = _values(runs["exec"], driver, "first_write_copyup", cache="warm")
        large = _values(runs["exec-large"], driver, "first_write_copyup", cache="warm")
        ratio = float(np.median(large) / np.median(small)) if len(small) and len(large) else math.nan
        ok = ratio > GROWTH if driver in grows else ratio < GROWTH
        out.append((f"{driver}: 64 MiB {_ms(large)} / 8 MiB {_ms(small)} = {ratio:.2f}x", ok))
    return out


def _first_write(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    return _growth(runs, drivers, grows=("overlay2", "aufs"))


def _depth(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    df, out = runs["rootfs"], []
    steps = {"overlay2": ("get", True), "btrfs": ("create_read_write", False)}
    for driver in drivers:
        step, grows = steps[driver]
        shallow = _values(df, driver, step, depth=DEPTHS[0])
        deep = _values(df, driver, step, depth=DEPTHS[-1])
        ratio, p, slower_deep = slower(deep, shallow)
        ok = (slower_deep and ratio > 1.2) if grows else ratio < 1.5
        out.append(
            (f"{driver} {step}: depth {DEPTHS[-1]} {_ms(deep)} / depth {DEPTHS[0]} {_ms(shallow)} = "
             f"{ratio:.2f}x, p={p:.3f}", ok)
        )
    return out


def _runtime_share(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    df, out = runs["exec"], []
    for driver in drivers:
        total = _values(df, driver, "run_rm_true", cache="warm")
        part = _values(df, driver, "run_rm_true:driver", cache="warm")
        share = 1 - float(np.median(part) / np.median(total)) if len(total) and len(part) else math.nan
        out.append((f"{driver}: runtime {share:.0%} of run_rm_true {_ms(total)} (driver {_ms(part)})", share > 0.5))
    return out


def _granularity(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    df, out = runs["exec"], []
    for driver in drivers:
        rows = _rows(df, driver, "cow_small_writes")
        per_write = finite(rows["space_per_write"])
        size = SMALL_COPYUP
        writes = int(rows["bytes"].iloc[0]) if len(rows) else 0
        median = float(np.median(per_write)) if len(per_write) else math.nan
        ok = median <= 16 << 10 if driver == "btrfs" else median * writes >= 0.9 * size
        out.append((f"{driver}: {median / 1024:.1f} KiB a 1-byte write (n={len(per_write)}, {writes} writes)", ok))
    return out


def _served(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    out, served_options = [], variants.parse(SERVED).column
    for step in ("seqread_1m_qd1", "randread_4k_qd1", "seqread_1m_qd16", "randread_4k_qd16"):
        passthrough, served = _values(runs["io"], "aufs", step), _values(runs["io"], "aufs", step, served_options)
        ratio, p, ok = slower(served, passthrough)
        out.append((f"aufs {step}: served {_ms(served)} / passthrough {_ms(passthrough)} a read = {ratio:.2f}x, "
                    f"p={p:.3f}", ok))  # fmt: skip
    return out


def _copyup_once(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    df, out = runs["io"], []
    for driver in drivers:
        for depth in (1, 16):
            copyup = _values(df, driver, f"randwrite_4k_qd{depth}:copyup")
            writes = _rows(df, driver, f"randwrite_4k_qd{depth}")
            p50 = finite(writes["clat_p50_ns"].astype("float64")) / 1e9
            ratio = float(np.median(copyup) / np.median(p50)) if len(copyup) and len(p50) else math.nan
            out.append((f"{driver} qd{depth}: copy-up {_ms(copyup)} = {ratio:.0f}x a following write's p50 "
                        f"latency ({_ms(p50)})", ratio > 10))  # fmt: skip
    return out


def _lazy_pull(runs: dict[str, pd.DataFrame], drivers: tuple[str, ...]) -> list[tuple[str, bool]]:
    df, out = runs["pull-lazy"], []
    for driver in drivers:
        full, lazy = _values(df, driver, "pull_to_first_byte"), _values(df, driver, "lazy_pull_to_first_byte")
        ratio, p, ok = slower(full, lazy)
        out.append((f"{driver}: full pull to first byte {_ms(full)} / lazy {_ms(lazy)} = {ratio:.2f}x, p={p:.3f}", ok))
        full_mb, lazy_mb = (_median(_fetched(df, driver, step)) / 1e6 for step in (
            "pull_to_first_byte", "lazy_pull_to_first_byte"))
        share = lazy_mb / full_mb
        out.append((f"{driver}: {lazy_mb:.3g} MB fetched before the first byte = {share:.1%} of a full pull's "
                    f"{full_mb:.3g} MB (medians, n={len(lazy)} and {len(full)})", share < LAZY_SHARE))  # fmt: skip
    return out


def _fetched(df: pd.DataFrame, driver: str, step: str) -> np.ndarray:
    return finite(df[(df["driver"] == driver) & (df["step"] == step)]["bytes_fetched"].astype("float64"))


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


BEHAVIOURS = (
    Behaviour(
        "cold-reads",
        "a cold read is slower than a warm one, on every driver",
        "Linux page cache (vm.drop_caches, Documentation/admin-guide/sysctl/vm.rst)",
        "cold first read (none of the file cached) / the re-read through the same mount > 1, p <= 0.05",
        ("exec",),
        DRIVERS,
        _cold_reads,
    ),
    Behaviour(
        "page-cache-sharing",
        "a new container reads the image's cached pages on overlay2 and aufs, not on btrfs and devmapper",
        "Docker docs: OverlayFS (page caching: shared), BTRFS (does not support page cache sharing), "
        "devicemapper (n containers load n copies of a file) storage drivers",
        "warm: >= 90% of the file cached before a new container's first read on overlay2, aufs; <= 10% on "
        "btrfs, devmapper",
        ("exec",),
        (*SHARES_PAGE_CACHE, *OWN_PAGE_CACHE),
        _sharing,
    ),
    Behaviour(
        "first-write",
        "first-write cost grows with file size on overlay2 and aufs, not on btrfs and devmapper",
        "Docker docs: OverlayFS and AUFS storage drivers (copy_up copies the whole file); btrfs and "
        "devicemapper drivers (block-level copy-on-write)",
        f"64 MiB / 8 MiB > {GROWTH:.2f} on overlay2, aufs; < {GROWTH:.2f} on btrfs, devmapper",
        ("exec", "exec-large"),
        ("overlay2", "aufs", "btrfs", "devmapper"),
        _first_write,
    ),
    Behaviour(
        "mount-depth",
        "overlay2 mount cost grows with depth; a btrfs snapshot does not",
        "Tarasov et al., In search of the ideal storage configuration for Docker containers (AMLCS '17); "
        "Docker docs: BTRFS storage driver (snapshots)",
        f"overlay2 get: depth {DEPTHS[-1]} / {DEPTHS[0]} > 1.2, p <= 0.05; btrfs create_read_write: < 1.5",
        ("rootfs",),
        ("overlay2", "btrfs"),
        _depth,
    ),
    Behaviour(
        "runtime-share",
        "starting a container is dominated by the runtime, not the copy-on-write driver",
        "Docker docs: OverlayFS and Docker performance; Harter et al., Slacker (FAST '16)",
        "runtime > 50% of run_rm_true (warm) on overlay2, btrfs",
        ("exec",),
        ("overlay2", "btrfs"),
        _runtime_share,
    ),
    Behaviour(
        "cow-granularity",
        "copy-on-write granularity: 4 KiB-class blocks on btrfs, the whole file on overlay2 and aufs",
        "Docker docs: BTRFS storage driver; OverlayFS and AUFS storage drivers (copy_up)",
        "btrfs <= 16 KiB a 1-byte write; overlay2, aufs: writes x space >= 90% of the file",
        ("exec",),
        ("btrfs", "overlay2", "aufs"),
        _granularity,
    ),
    Behaviour(
        "fuse-served",
        "FUSE reads served by the process are slower than passthrough reads",
        "Vangoor et al., To FUSE or not to FUSE (FAST '17); Linux 6.9 FUSE passthrough",
        "aufs served / passthrough > 1 a read, p <= 0.05 (both interleaved in one run)",
        ("io",),
        ("aufs",),
        _served,
        variants=(SERVED,),
    ),
    Behaviour(
        "lazy-pull",
        "a lazily started container fetches a small fraction of the image and starts sooner than after a full pull",
        "Harter et al., Slacker: Fast Distribution with Lazy Docker Containers (FAST '16): 6.4% of the image "
        "is read at start; lazy fetching starts containers ~5x faster",
        f"lazy bytes fetched before the first byte < {LAZY_SHARE:.0%} of a full pull's; full / lazy time to the "
        "first byte > 1, p <= 0.05 (aufs, big-file workload)",
        ("pull-lazy",),
        ("aufs",),
        _lazy_pull,
    ),
    Behaviour(
        "copyup-once",
        "random writes into a lower file pay the copy-up once",
        "Docker docs: OverlayFS and AUFS storage drivers (copy_up only on the first write)",
        "copy-up > 10x a following 4 KiB write's median latency, overlay2 and aufs",
        ("io",),
        ("overlay2", "aufs"),
        _copyup_once,
    ),
)
BEHAVIOUR_KEYS = tuple(b.key for b in BEHAVIOURS)


def _bench_run(spec: Spec, drivers: tuple[str, ...], out: str) -> pd.DataFrame:
    argv = [sys.executable, "-m", "bench.cli", "run", *[a for d in drivers for a in ("--driver", d)], *spec.args]
    argv += ["--out", out]
    log.info("verify: %s", " ".join(argv))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    with open(out + ".log", "w") as logfile:
        proc = subprocess.run(argv, stdout=logfile, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        raise VerifyError(f"bench run for {spec.name} exited {proc.returncode} (log: {out}.log)")
    return results.load([out])


def verify(
    *,
    quick: bool,
    drivers: list[str] | None = None,
    only: list[str] | None = None,
    repeat: int | None = None,
    out: str | None = None,
    console: Console | None = None,
) -> int:
    """Make the runs, judge every behaviour, print the table; 0 when all hold, else 1."""
    console = console or Console(width=max(Console().width, 200))
    chosen = [b for b in BEHAVIOURS if not only or b.key in only]
    selected = tuple(drivers or DRIVERS)
    plans = [(b, tuple(d for d in b.drivers if d in selected)) for b in chosen]
    plans = [(b, ds) for b, ds in plans if ds]
    if not plans:
        console.print("bench verify: no behaviour concerns the drivers given", style="bold red")
        return 2
    all_specs = specs(quick, repeat)
    needed: dict[str, set[str]] = {}
    for b, ds in plans:
        extra = [v for v in b.variants if variants.parse(v).name in ds]
        for run in b.runs:
            needed.setdefault(run, set()).update(d for d in (*ds, *extra) if d in all_specs[run].drivers)
    directory = out or tempfile.mkdtemp(prefix="strata-verify-")
    os.makedirs(directory, exist_ok=True)
    try:
        runs = {}
        for name, ds in needed.items():
            spec = all_specs[name]
            console.print(escape(f"verify: bench run {name} ({', '.join(sorted(ds))})"), highlight=False)
            runs[name] = _bench_run(spec, tuple(d for d in spec.drivers if d in ds), os.path.join(directory, name))
        verdicts = []
        for b, ds in plans:
            for measured, holds in b.judge(runs, ds):
                verdicts.append(Verdict(b.what, b.source, b.expected, measured, holds))
    finally:
        if out is None:
            shutil.rmtree(directory, ignore_errors=True)
    console.print(_table(verdicts))
    failed = [v for v in verdicts if not v.holds]
    console.print(
        f"{len(verdicts) - len(failed)} of {len(verdicts)} checks hold" + (f"; results kept in {out}" if out else ""),
        highlight=False,
    )
    return 1 if failed else 0


def _table(verdicts: list[Verdict]) -> Table:
    table = Table(title="bench verify: published behaviours", show_lines=True)
    for column in ("behaviour", "source", "expected", "measured (median, n, IQR)", "holds?"):
        table.add_column(column, overflow="fold")
    for v in verdicts:
        table.add_row(v.behaviour, v.source, v.expected, v.measured, "yes" if v.holds else "[bold red]NO[/]")
    return table

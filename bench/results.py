"""The results schema: tidy rows (one a measurement) in Parquet with a CSV twin, and run.json.

The column list below is the contract notebooks, `bench report` and `bench compare` read;
change it only together with SCHEMA_VERSION and the README's "Results schema" table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields

import pandas as pd

from . import variants

# 2: the io scenario's fio columns (iops ... runtime_s). 3: allocated_bytes,
# space_amplification_allocated, space_per_write, load1, steal; exec's read steps read a data
# file dropped cold after the mount, and new steps (README "What is measured"). 4: host, worker.
# 5: `system` (strata, a peer engine, or the floor). 6: `options` (a driver variant's options),
# `cached_bytes` (page cache before a read), bytes_fetched (pull's first-byte steps); exec's
# first write has its own container layer, new steps reread_bottom, reread_bottom_in_container,
# pull_to_first_byte, lazy_pull_to_first_byte.
SCHEMA_VERSION = 6
STRATA, FLOOR = "strata", "floor"
PARQUET, CSV, RUN_JSON = "results.parquet", "results.csv", "run.json"

# column -> pandas dtype (nullable ints: a space column is empty where nothing was measured)
COLUMNS: dict[str, str] = {
    "run_id": "string",
    "schema_version": "Int64",
    "host": "string",
    "worker": "string",
    "system": "string",
    "driver": "string",
    "options": "string",
    "backend": "string",
    "backing_fs": "string",
    "scenario": "string",
    "step": "string",
    "workload": "string",
    "layer": "Int64",
    "depth": "Int64",
    "files": "Int64",
    "bytes": "Int64",
    "cache": "string",
    "cache_dropped": "boolean",
    "page_cache_bytes": "Int64",
    "cached_bytes": "Int64",
    "repetition": "Int64",
    "seconds": "float64",
    "space_before": "Int64",
    "space_after": "Int64",
    "space_used": "Int64",
    "space_amplification": "float64",
    "allocated_bytes": "Int64",
    "space_amplification_allocated": "float64",
    "space_per_write": "float64",
    "execdriver": "string",
    "runtime": "string",
    "iops": "float64",
    "bw_bytes": "float64",
    "clat_p50_ns": "Int64",
    "clat_p99_ns": "Int64",
    "clat_p999_ns": "Int64",
    "runtime_s": "float64",
    "load1": "float64",
    "steal": "float64",
    "bytes_fetched": "Int64",
    "note": "string",
}
# what identifies a group of repetitions of the same measurement
GROUP_KEYS = [
    "host",
    "system",
    "driver",
    "options",
    "backend",
    "backing_fs",
    "scenario",
    "step",
    "workload",
    "layer",
    "depth",
    "cache",
    "execdriver",
]


@dataclass
class Row:
    run_id: str
    driver: str
    backend: str
    backing_fs: str
    scenario: str
    step: str
    workload: str
    layer: int = -1
    depth: int = 0
    files: int | None = None
    bytes: int | None = None
    cache: str = "warm"
    cache_dropped: bool = False
    page_cache_bytes: int | None = None
    cached_bytes: int | None = None  # of the file a read step reads, in the page cache right before it
    repetition: int = 0
    seconds: float = math.nan
    space_before: int | None = None
    space_after: int | None = None
    space_used: int | None = None
    space_amplification: float = math.nan
    allocated_bytes: int | None = None
    space_amplification_allocated: float = math.nan
    space_per_write: float = math.nan
    execdriver: str = ""
    runtime: str = ""
    iops: float = math.nan
    bw_bytes: float = math.nan
    clat_p50_ns: int | None = None
    clat_p99_ns: int | None = None
    clat_p999_ns: int | None = None
    runtime_s: float = math.nan
    load1: float = math.nan
    steal: float = math.nan
    bytes_fetched: int | None = None
    note: str = ""
    host: str = ""  # the machine (hostname) that measured the row
    worker: str = ""  # what ran it there: "local", "process", or a Dask worker's address
    options: str = ""  # the driver's options, "key=value,..." sorted (a variant such as aufs[fuse_passthrough=false])
    system: str = STRATA  # who did the step: strata, a peer engine ("dockerd 20.10.24") or the floor
    schema_version: int = SCHEMA_VERSION

    def with_space(self, before: int, after: int, allocated: int | None = None) -> Row:
        """Used space around the step; amplification against the file bytes and, when
        known, against the bytes those files occupy once block-rounded (st_blocks), so
        4 KiB rounding of small files is not mistaken for a driver's overhead."""
        self.space_before, self.space_after, self.space_used = before, after, after - before
        if self.bytes:
            self.space_amplification = (after - before) / self.bytes
        if allocated:
            self.allocated_bytes = allocated
            self.space_amplification_allocated = (after - before) / allocated
        return self


assert {f.name for f in fields(Row)} == set(COLUMNS), "Row and COLUMNS must list the same columns"


def frame(rows: list[Row]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(r) for r in rows], columns=list(COLUMNS))
    return df.astype(COLUMNS)


def write(directory: str, rows: list[Row], run: dict[str, object]) -> None:
    write_frame(directory, frame(rows), run)


def write_frame(directory: str, df: pd.DataFrame, run: dict[str, object]) -> None:
    """Rows already in a frame of this schema (a matrix run's merged cells), and run.json."""
    os.makedirs(directory, exist_ok=True)
    df.to_parquet(os.path.join(directory, PARQUET), index=False)
    df.to_csv(os.path.join(directory, CSV), index=False)
    with open(os.path.join(directory, RUN_JSON), "w") as f:
        json.dump(run, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


class ResultsError(Exception):
    """A directory does not hold bench results of a schema this version reads."""


def load(directories: list[str]) -> pd.DataFrame:
    """All rows of one or more result directories (one run each), checked against the schema."""
    frames = []
    for d in directories:
        path = os.path.join(d, PARQUET)
        if not os.path.exists(path):
            raise ResultsError(f"{d}: no {PARQUET} (not a bench result directory)")
        df = pd.read_parquet(path)
        versions = set(df["schema_version"].dropna().astype(int)) if len(df) else {SCHEMA_VERSION}
        if versions != {SCHEMA_VERSION}:
            raise ResultsError(f"{d}: schema version {sorted(versions)}, this bench reads {SCHEMA_VERSION}")
        missing = set(COLUMNS) - set(df.columns)
        if missing:
            raise ResultsError(f"{d}: {PARQUET} lacks columns {sorted(missing)}")
        frames.append(df.astype(COLUMNS))
    return pd.concat(frames, ignore_index=True) if frames else frame([])


def label_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Name each series `driver[options]` for a driver variant, `driver/backend` when the
    backend is not the driver itself (so FUSE aufs is never shown as kernel aufs), a peer's
    or the floor's `system/driver` (so dockerd on overlay2 sits beside strata's overlay2 in
    its own colour), and tell apart the same driver on different backing filesystems and
    workloads (`vfs [xfs]`), hosts and runs, so no figure draws two of them as one series."""
    backend = df["backend"].fillna("")
    kind = backend.str.split().str[0].fillna("")  # "fuse (direct, passthrough)" -> "fuse"
    own = (kind == df["driver"]) | (kind == "")
    df = variants.labelled(df).copy()
    # the whole backend string: aufs over FUSE with and without passthrough are two series
    df["driver"] = df["driver"].where(own, df["driver"] + "/" + backend)
    system = df["system"].fillna(STRATA).str.split().str[0]  # "dockerd 20.10.24" -> "dockerd"
    df["driver"] = df["driver"].where(system == STRATA, system + "/" + df["driver"])
    # the same series on two backing filesystems or workloads is two series: `vfs [xfs, mixed]`
    varying = [c for c in ("backing_fs", "workload") if (df.groupby("driver")[c].nunique() > 1).any()]
    if varying:
        df["driver"] = df["driver"] + " [" + df[varying].fillna("?").astype(str).agg(", ".join, axis=1) + "]"
    if df["host"].nunique() > 1:  # a cluster run: the same driver on each host is its own series
        df["driver"] = df["driver"] + " on " + df["host"]
    per_driver = df.groupby("driver")["run_id"].nunique()
    if (per_driver > 1).any():
        df["driver"] = df["driver"] + " @" + df["run_id"]
    return df


def load_run(directory: str) -> dict[str, object]:
    with open(os.path.join(directory, RUN_JSON)) as f:
        return json.load(f)

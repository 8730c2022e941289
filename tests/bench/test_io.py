"""The io scenario end to end: every fio job at both queue depths on vfs and on aufs served
by pyfuse3, with a tiny runtime, and fio's JSON report turned into columns."""

from __future__ import annotations

import hashlib
import json
import math
import os

import pytest

from bench import cli, fiojob, results
from bench.scenarios import DEFAULT_SCENARIOS
from bench.scenarios.io import JOBS, QUEUE_DEPTHS

from .conftest import bench

HARNESS_STEPS = (
    "randwrite_4k_qd{}:copyup",
    "mail_create_fsync_qd{}:delete_created",
    "mail_create_fsync_qd{}:delete_lower",
)
FIO_COLUMNS = ("iops", "bw_bytes", "clat_p50_ns", "clat_p99_ns", "clat_p999_ns", "runtime_s")


@pytest.fixture(scope="module")
def io_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("bench-io")
    out, scratch = str(base / "results"), str(base / "scratch")
    proc = bench(
        "run", "--driver", "vfs", "--driver", "aufs", "-o", "aufs.fuse_server=pyfuse3", "--scenario", "io",
        "--quick", "--io-runtime", "0.3", "--repeat", "1", "--warmup", "0", "--out", out, "--scratch", scratch,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_rows_for_every_job_queue_depth_and_driver(io_run: str) -> None:
    df = results.load([io_run])
    assert set(df["scenario"]) == {"io"} and set(df["schema_version"]) == {results.SCHEMA_VERSION}
    fio_steps = {f"{job}_qd{depth}" for job in JOBS for depth in QUEUE_DEPTHS}
    harness_steps = {step.format(depth) for step in HARNESS_STEPS for depth in QUEUE_DEPTHS}
    for driver in ("vfs", "aufs"):
        rows = df[df["driver"] == driver]
        assert set(rows["step"]) == fio_steps | harness_steps, driver
        assert len(rows) == len(fio_steps) + len(harness_steps)  # --repeat 1
        assert (rows["cache"] == "cold").all() and rows["cache_dropped"].all()
    assert set(df[df["driver"] == "aufs"]["backend"]) == {"fuse (pyfuse3, served)"}
    fio = df[df["step"].isin(fio_steps)]
    for column in FIO_COLUMNS:
        assert fio[column].notna().all() and (fio[column] > 0).all(), column
    assert (fio["clat_p50_ns"] <= fio["clat_p99_ns"]).all() and (fio["clat_p99_ns"] <= fio["clat_p999_ns"]).all()
    assert all(math.isclose(s, 1 / i) for s, i in zip(fio["seconds"], fio["iops"], strict=True))
    assert (fio["runtime_s"] < 5).all()  # bounded by --io-runtime (plus the final fsync)
    harness = df[df["step"].isin(harness_steps)]
    assert harness["seconds"].notna().all() and (harness["files"] > 0).all()
    assert harness["clat_p99_ns"].isna().all()  # fio's columns stay empty where fio did not measure
    lower = df[df["step"].str.endswith(":delete_lower")]
    assert set(lower["files"]) == {50}  # every lower spool file of the --quick data set


def test_fio_job_files_and_settings_are_recorded(io_run: str) -> None:
    io = results.load_run(io_run)["io"]
    assert [job["name"] for job in io["job_files"]] == list(JOBS)
    for job in io["job_files"]:
        with open(fiojob.job_file(job["name"]), "rb") as f:
            data = f.read()
        assert job["sha256"] == hashlib.sha256(data).hexdigest() and job["text"] == data.decode()
    assert io["engines"]["1"] == "psync" and io["engines"]["16"] in ("io_uring", "libaio")
    assert io["runtime_seconds"] == 0.3 and io["fio_version"].startswith("fio-")
    assert len(io["dataset"]["layers"]) == 2


def test_io_runs_only_when_named_and_quick_bounds_jobs() -> None:
    args = cli.parser().parse_args(["run", "--driver", "vfs"])
    assert args.scenario == list(DEFAULT_SCENARIOS) and "io" not in args.scenario
    bad = bench("run", "--driver", "vfs", "--scenario", "io", "--io-runtime", "0", "--out", os.devnull)
    assert bad.returncode == 2 and "--io-runtime" in bad.stderr


def test_parse_reads_the_side_that_did_io_after_fio_notes() -> None:
    side = {"io_bytes": 0, "iops": 0, "bw_bytes": 0, "runtime": 0, "clat_ns": {}}
    write = {
        "io_bytes": 8192, "iops": 2.0, "bw_bytes": 4096, "runtime": 2000,
        "clat_ns": {"percentile": {"50.000000": 10, "99.000000": 20, "99.900000": 30}},
    }  # fmt: skip
    report = "fio: opendir added 2 files\n" + json.dumps({"jobs": [{"error": 0, "read": side, "write": write}]})
    m = fiojob.parse(report, "job")
    assert (m.iops, m.bw_bytes, m.clat_p50_ns, m.clat_p99_ns, m.clat_p999_ns) == (2.0, 4096, 10, 20, 30)
    assert m.runtime_s == 2.0 and m.io_bytes == 8192
    with pytest.raises(fiojob.FioError, match="did no I/O"):
        fiojob.parse(json.dumps({"jobs": [{"error": 0, "read": side, "write": side}]}), "job")

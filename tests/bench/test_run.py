"""`bench run` end to end: the schema, run.json, what each scenario records, cache modes,
failure isolation, and that nothing stays mounted (after a run and after Ctrl-C)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from bench import cache, pagecache, results
from bench.config import QUICK_DEPTHS
from bench.scenarios.exec import EXEC_STEPS
from graphdrivers import loopdev, mountutil

from ..support.interrupt import interrupt_when
from .conftest import REPO, QuickRun, bench

REPEAT = 3  # --quick


def _rows(run: QuickRun) -> pd.DataFrame:
    """strata's rows (floors, on by default, are checked on their own)."""
    df = _rows_at(run.out)
    return df[df["system"] == results.STRATA]


def _rows_at(out: str) -> pd.DataFrame:
    return pd.read_parquet(os.path.join(out, results.PARQUET))


def test_schema_parquet_and_csv_twin(quick_run: QuickRun) -> None:
    df = _rows_at(quick_run.out)
    assert list(df.columns) == list(results.COLUMNS)
    assert (df["schema_version"] == results.SCHEMA_VERSION).all()
    assert df["run_id"].nunique() == 1
    csv = pd.read_csv(os.path.join(quick_run.out, results.CSV))
    assert list(csv.columns) == list(results.COLUMNS)
    assert len(csv) == len(df)
    assert set(df["scenario"]) == {"layer-create", "rootfs", "exec"}
    assert set(df["driver"]) == {"vfs"} and set(df["backing_fs"]) == {"ext4"}
    measured = df[df["seconds"].notna()]
    assert (measured["seconds"] > 0).all()
    assert (measured["repetition"] >= 0).all()  # warm-ups are not recorded


def test_run_json_records_machine_backing_and_software(quick_run: QuickRun) -> None:
    run = results.load_run(quick_run.out)
    assert run["schema_version"] == results.SCHEMA_VERSION
    assert run["run_id"] == _rows(quick_run)["run_id"].iloc[0]
    assert run["command_line"].startswith("bench run --driver vfs --quick")
    assert run["interrupted"] is False and run["started"] < run["finished"]
    machine = run["machine"]
    assert machine["cores"] == os.cpu_count() and machine["memory_bytes"] > 0
    assert machine["kernel"] == os.uname().release and machine["cpu_model"]
    assert len(run["git_commit"]) >= 40
    assert run["packages"]["pandas"] == pd.__version__
    vfs = run["drivers"]["vfs"]
    assert vfs["status"] == "ok" and vfs["errors"] == []
    assert "Backing Filesystem" in dict(vfs["status_rows"])
    assert vfs["backing"]["fstype"] == "ext4" and vfs["backing"]["kind"] == "loop"
    assert "rw" in vfs["backing"]["mount_options"]
    assert run["config"]["repeat"] == REPEAT and run["config"]["cache"] == "both"
    (layer,) = run["workload"]["layers"]  # busybox: one layer holding /bin/busybox
    assert layer["files"] >= 1 and layer["bytes"] >= os.path.getsize("/bin/busybox") and len(layer["sha256"]) == 64
    assert set(run["execdrivers"]) == {"oci", "native"}
    stats = run["statistics"]
    assert stats["groups"] >= stats["measured_groups"] > 0 and 0 <= stats["wide_groups"] <= stats["measured_groups"]


def test_layer_create_rows_per_layer_and_chain_with_space(quick_run: QuickRun) -> None:
    df = _rows(quick_run)
    lc = df[df["scenario"] == "layer-create"]
    for cache_mode in ("warm", "cold"):
        sub = lc[lc["cache"] == cache_mode]
        for step in ("create", "apply_diff", "create+apply_diff"):
            assert len(sub[(sub["step"] == step) & (sub["layer"] == 0)]) == REPEAT
            assert len(sub[(sub["step"] == f"chain:{step}") & (sub["layer"] == -1)]) == REPEAT
        chain = sub[sub["step"] == "chain:create+apply_diff"]
        assert (chain["bytes"] > 1_000_000).all()  # /bin/busybox is in it
        assert (chain["space_used"] >= chain["bytes"] * 0.9).all()  # vfs stores every byte
        assert (chain["space_amplification"] == chain["space_used"] / chain["bytes"]).all()
        together = sub[sub["step"] == "create+apply_diff"]["seconds"].to_numpy()
        apart = (
            sub[sub["step"] == "create"]["seconds"].to_numpy() + sub[sub["step"] == "apply_diff"]["seconds"].to_numpy()
        )
        assert (abs(together - apart) < 1e-9).all()


def test_floors_beside_the_driver_with_their_ratio(quick_run: QuickRun) -> None:
    """vfs's floors: `tar -x` of each layer (layer-create), a copy_file_range copy of the
    image tree (rootfs), runc and crun running a bundle (exec: true, run_rm_true, echo's
    first byte); x floor in the summary."""
    df = _rows_at(quick_run.out)
    floor = df[df["system"] == results.FLOOR]
    assert (floor["driver"] == "vfs").all() and floor["seconds"].gt(0).all()
    steps = set(zip(floor["scenario"], floor["step"], floor["backend"], strict=True))
    untar = "tar -x (started before the clock)"
    assert {("layer-create", "apply_diff", untar), ("layer-create", "chain:apply_diff", untar),
            ("rootfs", "create_read_write", "copy_file_range copy"), ("exec", "true", "runc run"),
            ("exec", "run_rm_true", "crun run"), ("exec", "echo_first_byte", "runc run")} <= steps  # fmt: skip
    assert "load" not in set(floor["step"])  # nothing loads the archive without peers
    assert set(floor[floor["scenario"] == "rootfs"]["depth"]) == {1, 8}
    summary = pd.read_csv(os.path.join(quick_run.out, "summary.csv"))
    chain = summary[(summary["step"] == "chain:apply_diff") & (summary["system"] == results.STRATA)]
    assert chain["vs_floor"].gt(0).all() and summary[summary["system"] == results.FLOOR]["vs_fastest"].isna().all()
    assert "x floor" in quick_run.proc.stdout


def test_rootfs_rows_exist_for_each_depth(quick_run: QuickRun) -> None:
    df = _rows(quick_run)
    rf = df[df["scenario"] == "rootfs"]
    assert sorted(rf["depth"].unique()) == list(QUICK_DEPTHS)
    for depth in QUICK_DEPTHS:
        for step in ("create_read_write", "get", "create_read_write+get", "put", "remove"):
            for cache_mode in ("warm", "cold"):
                sel = rf[(rf["depth"] == depth) & (rf["step"] == step) & (rf["cache"] == cache_mode)]
                assert sorted(sel["repetition"]) == list(range(REPEAT))


def test_cold_rows_dropped_caches_and_warm_rows_did_not(quick_run: QuickRun) -> None:
    df = _rows(quick_run)
    assert df[df["cache"] == "cold"]["cache_dropped"].all()
    assert not df[(df["cache"] == "warm") & df["seconds"].notna()]["cache_dropped"].any()
    assert (df[df["seconds"].notna()]["page_cache_bytes"] > 0).all()


def test_drop_evicts_a_file_from_the_page_cache(make_backing) -> None:
    """What --cache cold relies on: after cache.drop() a file just read is not resident."""
    fs = make_backing("ext4", 64 << 20)
    path = os.path.join(fs.mountpoint, "data")
    with open(path, "wb") as f:
        f.write(os.urandom(4 << 20))
    with open(path, "rb") as f:
        f.read()

    def resident_pages() -> int:
        out = subprocess.run(["fincore", "-n", "-b", "-o", "PAGES", path], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[0])

    assert resident_pages() > 0
    assert pagecache.cached_bytes(path) == resident_pages() * 4096 == 4 << 20  # the exec rows' cached_bytes
    cache.drop()
    assert resident_pages() == 0 and pagecache.cached_bytes(path) == 0


def test_exec_rows_are_numbers_or_say_why_not(quick_run: QuickRun) -> None:
    df = _rows(quick_run)
    ex = df[df["scenario"] == "exec"]
    for step in ("first_read_bottom", "first_write_copyup"):
        assert len(ex[(ex["step"] == step) & ex["seconds"].notna()]) == 2 * REPEAT
    for execdriver in ("oci", "native"):
        rows = ex[ex["execdriver"] == execdriver]
        assert set(rows["step"]) == set(EXEC_STEPS)
        unavailable = rows["note"].str.startswith("unavailable: ")
        assert (unavailable == rows["seconds"].isna()).all()  # never a number and a reason at once
        if unavailable.any():
            assert f"exec with execdriver {execdriver} unavailable" in quick_run.proc.stderr
        else:
            assert len(rows) == len(EXEC_STEPS) * 2 * REPEAT and (rows["seconds"] > 0).all()
            assert rows["runtime"].str.len().min() > 0  # which runtime ran it (runc version, or native)


def test_nothing_left_mounted_after_a_run(quick_run: QuickRun) -> None:
    assert mountutil.mounts_under(quick_run.scratch) == []
    assert not os.path.exists(quick_run.scratch)  # workload tars and loop images are deleted too


def test_summary_table_printed(quick_run: QuickRun) -> None:
    assert "medians (ms)" in quick_run.proc.stdout
    with open(os.path.join(quick_run.out, "summary.txt")) as f:
        text = f.read()
    assert "create_read_write+get" in text and "chain:apply_diff" in text


def test_summary_files_beside_the_csv(quick_run: QuickRun) -> None:
    """summary.csv has every statistic (tail percentiles empty: n=3 supports neither p90
    nor p99); summary.md and summary.tex hold the columns a paper shows."""
    csv = pd.read_csv(os.path.join(quick_run.out, "summary.csv"))
    assert {"n", "median", "ci_low", "ci_high", "precision", "p90", "p99", "wide"} <= set(csv.columns)
    assert csv["p90"].isna().all() and csv["p99"].isna().all() and (csv["n"] == REPEAT).all()
    with open(os.path.join(quick_run.out, "summary.md")) as f:
        markdown = f.read()
    assert markdown.startswith("| system   | driver") and "create_read_write+get" in markdown
    with open(os.path.join(quick_run.out, "summary.tex")) as f:
        latex = f.read()
    assert "\\begin{tabular}" in latex and "create\\_read\\_write+get" in latex


def test_failing_driver_is_reported_and_the_others_still_run(tmp_path) -> None:
    """btrfs on an ext4 --backing path cannot start; vfs (set up before it, on the same
    path) and overlay2 (after it) must still be measured."""
    out = str(tmp_path / "out")
    backing = tmp_path / "backing"
    backing.mkdir()
    proc = bench(
        "run",
        "--driver",
        "vfs",
        "--driver",
        "nosuch",
        "--driver",
        "btrfs",
        "--driver",
        "overlay2",
        "--quick",
        "--scenario",
        "rootfs",
        "--depths",
        "1",
        "--backing",
        str(backing),
        "--out",
        out,
    )
    assert proc.returncode == 1, proc.stderr
    run = results.load_run(out)
    assert run["drivers"]["nosuch"]["status"] == "failed"
    assert "no such driver" in run["drivers"]["nosuch"]["errors"][0]
    assert run["drivers"]["btrfs"]["status"] == "failed"
    assert "btrfs" in run["drivers"]["btrfs"]["errors"][0]
    assert run["drivers"]["vfs"]["status"] == "ok" and run["drivers"]["overlay2"]["status"] == "ok"
    assert "warning: driver btrfs failed to start" in " ".join(proc.stderr.split())
    df = pd.read_parquet(os.path.join(out, results.PARQUET))
    df = df[df["system"] == results.STRATA]
    assert set(df["driver"]) == {"vfs", "overlay2"} and len(df) == 2 * 5 * REPEAT
    assert os.listdir(backing) == []  # the --backing path is left as it was


def test_sigint_mid_run_unmounts_everything(tmp_path) -> None:
    scratch, out = str(tmp_path / "scratch"), str(tmp_path / "out")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            "--driver",
            "vfs",
            "--quick",
            "--workload",
            "deep",
            "--depth",
            "60",
            "--scenario",
            "rootfs",
            "--depths",
            "60",
            "--repeat",
            "500",
            "--scratch",
            scratch,
            "--out",
            out,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    layers = os.path.join(scratch, "vfs-ext4", "mnt", "root", "vfs", "dir")  # <driver>-<backing fs>
    image = os.path.join(scratch, "vfs-ext4", "ext4.img")

    def making_layers() -> bool:
        return os.path.isdir(layers) and len(os.listdir(layers)) > 20

    def mounted() -> None:
        assert mountutil.mounts_under(scratch) and loopdev.devices_for(image)

    err = interrupt_when(proc, making_layers, within=60, settle=mounted, timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert mountutil.mounts_under(scratch) == [] and loopdev.devices_for(image) == []
    assert not os.path.exists(scratch)
    with open(os.path.join(out, results.RUN_JSON)) as f:
        assert json.load(f)["interrupted"] is True


def test_storage_opts_reach_their_driver_and_name_its_backend(tmp_path) -> None:
    """The served and the passthrough FUSE data paths are different backends in the rows."""
    out = str(tmp_path / "out")
    opts = ("--storage-opt", "aufs.backend=fuse", "-o", "aufs.fuse_passthrough=false")
    proc = bench("run", "--driver", "aufs", *opts, "--quick", "--scenario", "rootfs", "--depths", "1", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = results.load_run(out)
    assert run["config"]["storage_opts"] == {"aufs.backend": "fuse", "aufs.fuse_passthrough": "false"}
    backend = "fuse (direct, served)"
    assert run["drivers"]["aufs"]["backend"] == backend
    rows = _rows_at(out)
    assert set(rows[rows["system"] == results.STRATA]["backend"]) == {backend}  # the floor rows name theirs


def test_a_storage_opt_for_no_driver_of_the_run_is_refused(tmp_path) -> None:
    proc = bench("run", "--driver", "vfs", "-o", "aufs.fuse_passthrough=false", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--storage-opt aufs.fuse_passthrough: names no driver of this run (vfs)" in proc.stderr
    proc = bench("run", "--driver", "vfs", "-o", "passthrough", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 2 and "DRIVER.KEY=VALUE" in proc.stderr
    assert os.listdir(tmp_path) == []


def test_ctrl_c_while_a_driver_reports_its_status_leaves_nothing(tmp_path, monkeypatch) -> None:
    """Ctrl-C arriving inside driver.status() -- after the sandbox's loop filesystem is
    mounted, before the driver counts as opened -- still unmounts and detaches it."""
    from bench.config import RunConfig
    from bench.runner import Run
    from graphdrivers.vfs.driver import VfsDriver

    seen: list[str] = []

    def interrupted_status(self: VfsDriver) -> list[tuple[str, str]]:
        seen.extend(mountutil.mounts_under(scratch))  # the sandbox is mounted at this point
        raise KeyboardInterrupt

    monkeypatch.setattr(VfsDriver, "status", interrupted_status)
    scratch, out = str(tmp_path / "scratch"), str(tmp_path / "out")
    config = RunConfig(drivers=["vfs"], scenarios=["rootfs"], depths=(1,), repeat=1, warmup=0, quick=True,
                       out=out, scratch=scratch)  # fmt: skip
    assert Run(config, ["bench", "run"]).execute() == 130
    assert seen  # it was interrupted with the loop filesystem mounted
    assert not os.path.exists(scratch) and mountutil.mounts_under(str(tmp_path)) == []
    assert loopdev.devices_for(os.path.join(scratch, "vfs-ext4", "ext4.img")) == []
    assert results.load_run(out)["interrupted"] is True

"""What issue 14 made the harness measure: cold reads that are cold, end-to-end start,
durable copy-up, copy-on-write granularity, allocated bytes, randomised order, padding
data, several backing filesystems, pinning and environment columns, and `bench verify`."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from bench import environment, order, results
from bench.sandbox import cells

from .conftest import QuickRun, bench

REPEAT = 3  # --quick


def _rows_at(out: str) -> pd.DataFrame:
    return pd.read_parquet(os.path.join(out, results.PARQUET))


def _run_json(out: str) -> dict:
    with open(os.path.join(out, results.RUN_JSON)) as f:
        return json.load(f)


def test_exec_measures_end_to_end_start_durable_copyup_and_writeback(quick_run: QuickRun) -> None:
    ex = _rows_at(quick_run.out)
    ex = ex[ex["scenario"] == "exec"]
    for step in ("first_write_copyup:writeback", "first_write_copyup_durable", "cow_small_writes"):
        assert len(ex[(ex["step"] == step) & (ex["seconds"] > 0)]) == 2 * REPEAT
    for execdriver in ("oci", "native"):
        rows = ex[(ex["execdriver"] == execdriver) & (ex["system"] == "strata")]  # not the runc/crun floors
        if rows["note"].str.startswith("unavailable").any():
            continue
        total = rows[rows["step"] == "run_rm_true"].set_index(["cache", "repetition"])["seconds"]
        part = rows[rows["step"] == "run_rm_true:driver"].set_index(["cache", "repetition"])["seconds"]
        assert len(total) == 2 * REPEAT and ((part > 0) & (part < total)).all()
    assert "end-to-end start (run_rm_true): the driver's share" in quick_run.proc.stdout


def test_cold_exec_rows_dropped_after_the_container_layer_was_made(quick_run: QuickRun) -> None:
    """vfs copies the image into each container layer; a cold read after that copy only
    stays cold if the drop comes after it: none of the file is cached before a cold first
    read (in the container too), all of it before the re-read through the same mount."""
    df = _rows_at(quick_run.out)
    reads = df[df["step"].isin(["first_read_bottom", "read_bottom_in_container"]) & (df["system"] == "strata")]
    cold = reads[(reads["cache"] == "cold") & (reads["note"].fillna("") == "")]
    assert cold["cache_dropped"].all() and len(cold) >= REPEAT and (cold["cached_bytes"] == 0).all()
    rereads = df[df["step"].isin(["reread_bottom", "reread_bottom_in_container"]) & (df["note"].fillna("") == "")]
    # all of it, but for a re-read whose pages something else on this shared machine evicted
    # (another run's drop_caches, memory pressure) in between: the median, not every row
    assert len(rereads) >= 2 * REPEAT and rereads["cached_bytes"].median() == 64 << 20
    first = df[df["step"] == "first_read_bottom"]
    assert (first["files"] > 0).all() and (first["depth"] == 3).all()  # bottom data + busybox + big file


def test_cold_exec_drops_the_cache_after_the_container_layer_is_mounted(tmp_path, monkeypatch) -> None:
    """vfs copies the image into each container layer when it is made; a cold read after that
    copy is only cold if the drop comes after it: every drop follows the mount of the
    container layer the next measurement reads from (whether cold is slower is `bench verify`'s)."""
    from bench import cache
    from bench.config import RunConfig
    from bench.runner import Run
    from graphdrivers.driver import Driver

    calls: list[str] = []
    real_get, real_drop = Driver.get, cache.drop

    def get(self, id, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(f"get {id.split('-', 1)[0]}")
        return real_get(self, id, *args, **kwargs)

    def drop() -> None:
        calls.append("drop")
        real_drop()

    monkeypatch.setattr(Driver, "get", get)
    monkeypatch.setattr(cache, "drop", drop)
    config = RunConfig(drivers=["vfs"], scenarios=["exec"], execdrivers=["native"], cache="cold", repeat=1,
                       warmup=0, quick=True, floors=False, out=str(tmp_path / "out"),
                       scratch=str(tmp_path / "scratch"))  # fmt: skip
    assert Run(config, ["bench", "run"]).execute() == 0
    drops = [i for i, call in enumerate(calls) if call == "drop"]
    assert len(drops) >= 4  # first read, first write, durable copy-up, small writes (and the runners')
    for i in drops[:4]:
        assert calls[i - 1] in ("get exc", "get exf", "get exd", "get exw"), calls[: i + 1]
    rows = _rows_at(config.out)
    assert rows.loc[rows["scenario"] == "exec", "cache_dropped"].all()


def test_cow_small_writes_record_space_per_write(quick_run: QuickRun) -> None:
    df = _rows_at(quick_run.out)
    cow = df[df["step"] == "cow_small_writes"]
    assert (cow["bytes"] == 32).all()  # --quick: 8 MiB big file / 256 KiB stride
    assert (cow["space_per_write"] == cow["space_used"] / cow["bytes"]).all()
    assert (cow["space_per_write"] < 4096).all()  # vfs writes into its own full copy, in place


def test_layer_create_rows_carry_allocated_bytes(quick_run: QuickRun) -> None:
    df = _rows_at(quick_run.out)
    rows = df[(df["step"] == "create+apply_diff") | (df["step"] == "chain:create+apply_diff")]
    assert (rows["allocated_bytes"] >= rows["bytes"]).all()  # whole blocks
    assert (rows["allocated_bytes"] < rows["bytes"] * 1.2).all()
    expected = rows["space_used"] / rows["allocated_bytes"]
    assert (abs(rows["space_amplification_allocated"] - expected) < 1e-12).all()


def test_rows_carry_load_and_steal_and_run_json_the_environment(quick_run: QuickRun) -> None:
    df = _rows_at(quick_run.out)
    measured = df[df["seconds"].notna()]
    assert (measured["load1"] >= 0).all() and measured["steal"].between(0, 1).all()
    run = _run_json(quick_run.out)
    assert isinstance(run["config"]["seed"], int) and run["config"]["order"] == "random"
    assert run["config"]["drivers"] == ["vfs"]
    assert run["machine"]["virtualisation"] and run["machine"]["cpu_governor"]


def test_order_is_drawn_from_the_seed_and_fixed_keeps_it() -> None:
    items = list(range(10))
    first = order.visit(items, order="random", seed=1, what="rootfs", round_=0)
    assert first == order.visit(items, order="random", seed=1, what="rootfs", round_=0)
    assert sorted(first) == items and first != items
    assert first != order.visit(items, order="random", seed=1, what="rootfs", round_=1)
    assert order.visit(items, order="fixed", seed=1, what="rootfs", round_=3) == items


def test_cells_are_each_driver_on_each_filesystem() -> None:
    assert cells(["vfs", "btrfs"], []) == [("vfs", "ext4"), ("btrfs", "btrfs")]
    assert cells(["vfs", "btrfs"], ["ext4", "xfs"]) == [
        ("vfs", "ext4"),
        ("vfs", "xfs"),
        ("btrfs", "ext4"),
        ("btrfs", "xfs"),
    ]


def test_cpu_lists_are_checked() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    assert environment.parse_cpus(f"{allowed[0]}") == {allowed[0]}
    for bad in ("x", "3-1", "", "4096"):
        with pytest.raises(environment.CpuListError):
            environment.parse_cpus(bad)


def test_backing_fs_pad_bytes_cpus_and_seed(tmp_path) -> None:
    """vfs on ext4 and xfs, btrfs refused on both (not a failure); padding layers carry data;
    the run is pinned and its seed recorded."""
    out = str(tmp_path / "out")
    cpu = min(os.sched_getaffinity(0))
    proc = bench(
        "run", "--driver", "vfs", "--driver", "btrfs", "--backing-fs", "ext4,xfs", "--scenario", "rootfs",
        "--depths", "1,4", "--pad-bytes", "64K", "--repeat", "1", "--warmup", "0", "--quick",
        "--cpus", str(cpu), "--seed", "7", "--out", out, "--scratch", str(tmp_path / "scratch"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = _rows_at(out)
    assert set(df["driver"]) == {"vfs"} and set(df["backing_fs"]) == {"ext4", "xfs"}
    sizes = df[df["step"] == "get"].groupby("depth")["bytes"].max()
    assert sizes[4] - sizes[1] >= 3 * (64 << 10)
    run = _run_json(out)
    assert run["config"]["seed"] == 7 and run["config"]["cpus"] == [cpu] and run["config"]["pad_bytes"] == 64 << 10
    assert run["drivers"]["btrfs@ext4"]["status"] == "unsupported"
    assert run["drivers"]["vfs@xfs"]["backing"]["mkfs"][0] == "mkfs.xfs"


def test_bad_measurement_options_are_refused(tmp_path) -> None:
    for args, message in (
        (("--cpus", "4096"), "not available"),
        (("--backing-fs", "zfs"), "unknown zfs"),
        (("--backing", str(tmp_path), "--backing-fs", "xfs"), "--backing-fs makes loop filesystems"),
        (("--cow-writes", "1000"), "does not fit"),
        (("--read-bytes", "0"), "--read-bytes must be at least 1 byte"),
    ):
        proc = bench("run", "--driver", "vfs", "--quick", "--out", str(tmp_path / "never"), *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "never")


def test_space_vfs_grows_with_layers_cow_drivers_stay_flat(tmp_path) -> None:
    """A published behaviour that depends on space only: each vfs layer is a full copy of
    the layers below it, a btrfs or overlay2 layer holds only its own files."""
    out = str(tmp_path / "out")
    proc = bench(
        "run", "--driver", "vfs", "--driver", "btrfs", "--driver", "overlay2", "--scenario", "layer-create",
        "--workload", "deep", "--depth", "8", "--repeat", "1", "--warmup", "0", "--quick", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = _rows_at(out)
    per_layer = df[df["step"] == "create+apply_diff"].set_index(["driver", "layer"])["space_used"]
    # layer i of vfs holds i+1 layers' files: (8 x 36 KiB + dirs) / (2 x 36 KiB + dirs) ~ 3.7
    assert per_layer["vfs", 7] > 3 * per_layer["vfs", 1] and per_layer["vfs", 7] > per_layer["vfs", 4]
    for driver in ("btrfs", "overlay2"):
        assert per_layer[driver, 7] < 2 * per_layer[driver, 1] + (64 << 10)


def test_space_cow_granularity_and_page_cache_sharing(tmp_path) -> None:
    """btrfs copies a block on a small write, overlay2 the whole file; a new overlay2
    container reads the image's cached pages, a new btrfs snapshot's file starts uncached
    (Docker docs: OverlayFS shares the page cache, btrfs does not)."""
    out = str(tmp_path / "out")
    proc = bench(
        "run", "--driver", "btrfs", "--driver", "overlay2", "--scenario", "exec", "--execdriver", "native",
        "--repeat", "2", "--warmup", "0", "--quick", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = _rows_at(out)
    cow = df[(df["step"] == "cow_small_writes") & (df["repetition"] == 0)].set_index("driver")
    assert cow.loc["btrfs", "space_per_write"] <= 16 << 10
    assert cow.loc["overlay2", "space_used"] >= 0.9 * (8 << 20)  # the whole 8 MiB file was copied up
    cached = df[(df["step"] == "first_read_bottom") & (df["system"] == "strata")].groupby("driver")["cached_bytes"]
    # nothing can warm a new snapshot's file; something else on this shared machine can evict
    # the image's pages (another run's drop_caches), so overlay2: at least one of two repetitions
    assert cached.max()["btrfs"] == 0 and cached.max()["overlay2"] == 64 << 20


def test_driver_variants_run_interleaved_and_stay_apart(tmp_path) -> None:
    """`vfs` and `vfs[copy=full]` are two participants of one run: their rows carry the
    options, run.json both records, the summary a line each."""
    out = str(tmp_path / "out")
    proc = bench(
        "run", "--driver", "vfs", "--driver", "vfs[copy=full]", "--scenario", "rootfs", "--depths", "1",
        "--repeat", "2", "--warmup", "0", "--quick", "--no-floors", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = _rows_at(out)
    gets = df[df["step"] == "get"]
    assert sorted(gets["options"].fillna("")) == ["", "", "copy=full", "copy=full"]
    run = _run_json(out)
    assert run["drivers"]["vfs[copy=full]"]["options"] == {"vfs.copy": "full"}
    assert run["drivers"]["vfs"]["options"] == {}
    assert "vfs[copy=full]" in proc.stdout
    assert set(results.label_runs(df)["driver"]) == {"vfs", "vfs[copy=full]"}


def test_driver_variants_are_checked(tmp_path) -> None:
    for value, message in (("vfs[copy]", "is not KEY=VALUE"), ("vfs[]", "empty option list"), ("v f s", "want NAME")):
        proc = bench("run", "--driver", value, "--quick", "--out", str(tmp_path / "never"))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = bench("run", "--driver", "vfs[nope=1]", "--scenario", "rootfs", "--quick", "--out", str(tmp_path / "o"))
    assert proc.returncode == 1 and "unknown option 'vfs.nope'" in proc.stdout + proc.stderr
    assert not os.path.exists(tmp_path / "never")


def test_verify_prints_its_table(tmp_path) -> None:
    """A smoke test of `bench verify` on one behaviour, one driver, 3 repetitions: the table
    is produced (whether the behaviour holds on a loaded machine is not asserted here)."""
    proc = bench("verify", "--quick", "--driver", "overlay2", "--only", "mount-depth", "--repeat", "3",
                 "--out", str(tmp_path / "v"))  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "bench verify: published behaviours" in proc.stdout
    assert "overlay2 get: depth 64" in proc.stdout and "checks hold" in proc.stdout
    assert os.path.exists(tmp_path / "v" / "rootfs" / results.PARQUET)


def test_verify_refuses_unknown_names() -> None:
    proc = bench("verify", "--quick", "--only", "nonsense")
    assert proc.returncode == 2 and "unknown nonsense" in proc.stderr


def test_layer_create_never_mounts_between_its_timed_steps(tmp_path, monkeypatch) -> None:
    """The allocated-bytes walk (get + put of each layer) comes after the whole chain, in
    warm-ups and measured chains alike: no create/apply_diff follows a mount of the chain."""
    from bench.config import RunConfig
    from bench.runner import Run
    from graphdrivers.driver import Driver

    calls: list[tuple[str, str]] = []
    for method in ("create", "apply_diff", "get"):
        real = getattr(Driver, method)

        def spy(self, id, *args, _real=real, _method=method, **kwargs):  # type: ignore[no-untyped-def]
            if id.startswith("lc"):
                calls.append((id.rsplit("-", 2)[0], _method))  # the chain: lc<repetition><cache>
            return _real(self, id, *args, **kwargs)

        monkeypatch.setattr(Driver, method, spy)
    config = RunConfig(drivers=["overlay2"], scenarios=["layer-create"], repeat=2, warmup=1, quick=True,
                       floors=False, out=str(tmp_path / "out"), scratch=str(tmp_path / "scratch"))  # fmt: skip
    assert Run(config, ["bench", "run"]).execute() == 0
    chains: dict[str, list[str]] = {}
    for chain, method in calls:
        chains.setdefault(chain, []).append(method)
    assert len(chains) == 3  # one warm-up, two measured
    for methods in chains.values():
        first_get = methods.index("get")
        assert "create" not in methods[first_get:] and "apply_diff" not in methods[first_get:], methods
    assert len({tuple(m) for m in chains.values()}) == 1  # every repetition makes the same calls

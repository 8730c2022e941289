"""bench.stats: the one set of rules every table, figure, compare and the notebook use."""

from __future__ import annotations

import math

import numpy as np

from bench import stats


def test_tail_percentiles_only_where_n_supports_them() -> None:
    rng = np.random.default_rng(0)
    nine, ten, hundred = (stats.describe(rng.lognormal(0, 0.2, n)) for n in (9, 10, 100))
    assert math.isnan(nine["p90"]) and math.isnan(nine["p99"])
    assert ten["p90"] > ten["median"] and math.isnan(ten["p99"])
    assert hundred["p99"] >= hundred["p90"] > hundred["median"]


def test_precision_and_wide_follow_the_median_ci() -> None:
    tight = stats.describe(np.full(8, 2.0) + np.linspace(0, 0.01, 8))
    assert tight["precision"] < 0.01 and not tight["wide"]
    loose = stats.describe(np.array([1.0, 5.0, 1.2, 6.0, 0.8]))
    assert loose["precision"] > stats.WIDE_SPREAD and loose["wide"]
    single = stats.describe(np.array([3.0]))  # one value: no interval, never "perfectly precise"
    assert math.isnan(single["ci_low"]) and math.isnan(single["ci_high"]) and single["ci_level"] == 0
    assert single["precision"] == math.inf and single["wide"]


def test_median_ci_is_the_exact_order_statistic_interval() -> None:
    """Ranks from the binomial: 95% from n = 6; below that [min, max] at its real level."""
    assert stats.median_ranks(3) == (1, 0.75)
    assert stats.median_ranks(5) == (1, 0.9375)
    assert stats.median_ranks(6) == (1, 0.96875)
    assert stats.median_ranks(20)[0] == 6  # the textbook x(6)..x(15)
    values = np.arange(1.0, 21.0)
    assert stats.median_ci(values) == (6.0, 15.0)
    three = stats.describe(np.array([2.0, 1.0, 3.0]))
    assert (three["ci_low"], three["ci_high"], three["ci_level"]) == (1.0, 3.0, 0.75)


def test_median_ci_covers_the_true_median_at_least_as_often_as_it_says() -> None:
    rng = np.random.default_rng(7)
    for n in (3, 6, 10, 30):
        samples = rng.lognormal(0.0, 0.5, (4000, n))  # true median 1
        covered = [low <= 1.0 <= high for low, high in map(stats.median_ci, samples)]
        assert np.mean(covered) >= stats.median_ranks(n)[1] - 0.015, n


def test_ratio_ci_brackets_the_ratio() -> None:
    rng = np.random.default_rng(1)
    base = rng.lognormal(0, 0.1, 30)
    low, high = stats.ratio_ci(base, base * 2)
    assert low < 2 < high and high - low < 0.5


def test_every_figure_gives_a_driver_the_same_colour() -> None:
    from bench import palette

    assert palette.colour("overlay2") == palette.colour("overlay2 @20260101T000000Z-beef")
    assert palette.colour("aufs/fuse") == palette.colour("aufs")
    assert len({palette.colour(n) for n in ("vfs", "overlay2", "btrfs", "aufs", "devmapper", "dockerd", "podman")}) == 7
    assert palette.colour("zfs") == palette.colour("zfs")  # an unknown name: stable, not by plotting order
    labels = ["vfs @a", "vfs @b", "btrfs"]
    assert [palette.dash(label, labels) for label in labels] == ["-", "--", "-"]


def test_log_axes_only_where_values_span_decades() -> None:
    from bench import figures

    assert not figures.spans_decades([1.0, 9.0])
    assert figures.spans_decades([0.05, 1.0])


def test_x_fastest_ranks_drivers_within_a_run_only(tmp_path) -> None:
    """Two runs, one driver each: each is the fastest of its own run, never ranked across runs."""
    from bench import results
    from bench.results import label_runs
    from bench.table import summary

    from .synthetic import write_run

    slow = write_run(str(tmp_path / "a"), drivers=("vfs",), run_id="20260101T000000Z-aaaa")
    fast = write_run(str(tmp_path / "b"), drivers=("overlay2",), run_id="20260102T000000Z-bbbb")
    stats = summary(label_runs(results.load([slow, fast])))
    assert set(stats["run_id"]) == {"20260101T000000Z-aaaa", "20260102T000000Z-bbbb"}
    assert (stats["vs_fastest"] == 1.0).all()


def _summary_of(directory: str, **changes: object):
    from bench import results
    from bench.table import summary

    df = results.load([directory])
    for column, value in changes.items():
        df[column] = value(df) if callable(value) else value
    return summary(df)


def test_x_floor_and_space_x_never_pool_backing_filesystems(tmp_path) -> None:
    """vfs on ext4 and on xfs (twice as slow, three times the space), each with its floor:
    each row divides by the floor on its own filesystem and shows its own space."""
    from .synthetic import write_run

    run = write_run(str(tmp_path / "a"), drivers=("vfs",), systems={"strata": 1.0, "floor": 0.5},
                    filesystems={"ext4": 1.0, "xfs": 2.0})  # fmt: skip
    stats = _summary_of(run, space_amplification=lambda df: df["backing_fs"].map({"ext4": 1.0, "xfs": 3.0}))
    strata = stats[(stats["system"] == "strata") & (stats["step"] != "true")]  # `true`: the fastest runtime's floor
    assert strata["vs_floor"].between(1.6, 2.4).all(), strata[["backing_fs", "step", "vs_floor"]]
    assert (strata["vs_floor_low"] < strata["vs_floor"]).all() and (strata["vs_floor"] < strata["vs_floor_high"]).all()
    space = stats.groupby("backing_fs")["space_amplification"].agg(["min", "max"])
    assert space.loc["ext4"].tolist() == [1.0, 1.0] and space.loc["xfs"].tolist() == [3.0, 3.0]
    assert (stats["space_n"] == stats["n"]).all()


def test_x_fastest_carries_a_ci_and_the_fastest_is_the_reference(tmp_path) -> None:
    from .synthetic import write_run

    stats = _summary_of(write_run(str(tmp_path / "a"), n=30))
    fastest, others = stats[stats["vs_fastest"] == 1.0], stats[stats["vs_fastest"] > 1.0]
    assert len(fastest) == 8 and len(others) == 8  # overlay2 beats vfs (3x) in every group
    assert fastest["vs_fastest_low"].isna().all()
    assert ((others["vs_fastest_low"] < 3.0) & (3.0 < others["vs_fastest_high"])).all()


def test_x_fastest_is_empty_across_cells_that_were_not_interleaved(tmp_path) -> None:
    """--isolate process / --cluster: each driver's cell ran on its own, so drivers are not
    ranked against each other; a peer measured in the same cell still is."""
    from .synthetic import write_run

    run = write_run(str(tmp_path / "a"), systems={"strata": 1.0, "dockerd 20.10.24": 2.0})
    stats = _summary_of(run, worker="process")
    assert stats["vs_fastest"].between(0.99, 1.01).sum() == 16  # strata, fastest in its own cell
    assert stats.loc[stats["system"] != "strata", "vs_fastest"].between(1.6, 2.4).all()
    alone = _summary_of(write_run(str(tmp_path / "b")), worker="process")
    assert alone["vs_fastest"].isna().all()


def test_figure_series_tell_backing_filesystems_and_workloads_apart(tmp_path) -> None:
    """One driver on two filesystems and two workloads is four series, each its driver's colour."""
    import pandas as pd

    from bench import palette, results

    from .synthetic import write_run

    a = results.load([write_run(str(tmp_path / "a"), drivers=("vfs",), filesystems={"ext4": 1.0, "xfs": 2.0})])
    b = a.assign(workload="mixed")
    labels = set(results.label_runs(pd.concat([a, b], ignore_index=True))["driver"])
    assert labels == {"vfs [ext4, busybox]", "vfs [xfs, busybox]", "vfs [ext4, mixed]", "vfs [xfs, mixed]"}
    assert {palette.colour(label) for label in labels} == {palette.colour("vfs")}
    assert set(results.label_runs(a[a["backing_fs"] == "ext4"])["driver"]) == {"vfs"}  # nothing varies: plain

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

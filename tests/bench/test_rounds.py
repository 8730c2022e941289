"""bench.rounds: how many repetitions a phase takes, fixed or until every group is precise."""

from __future__ import annotations

from bench.config import RunConfig
from bench.results import Row
from bench.rounds import Rounds


def _rows(driver: str, values: list[float]) -> list[Row]:
    return [
        Row("r", driver, driver, "ext4", "rootfs", "put", "busybox", depth=1, repetition=i, seconds=v)
        for i, v in enumerate(values)
    ]


def test_rounds_fixed_count_without_auto() -> None:
    rounds = Rounds(RunConfig(drivers=["vfs"], scenarios=["rootfs"], repeat=3))
    assert [rounds.more(("warm", 1), i) for i in range(4)] == [True, True, True, False]
    assert rounds.facts() == [{"cache": "warm", "depth": 1, "rounds": 3, "reason": "repeat", "worst_precision": None}]


def test_rounds_auto_stops_when_every_group_is_precise() -> None:
    config = RunConfig(drivers=["vfs"], scenarios=["rootfs"], repeat=5, adaptive=True, max_repeat=30)
    rounds = Rounds(config)
    precise, noisy = _rows("vfs", [1.0, 1.01, 0.99, 1.0, 1.02]), _rows("overlay2", [1.0, 3.0, 0.5, 2.0, 0.7])
    rounds.watch(precise)
    rounds.watch(noisy)
    assert rounds.more(("warm", 1), 5)  # overlay2 is not precise yet: everyone takes another round
    noisy[:] = _rows("overlay2", [1.0 + 0.001 * i for i in range(6)])
    precise += _rows("vfs", [1.0])
    assert not rounds.more(("warm", 1), 6)
    assert rounds.facts()[0]["reason"] == "precise"


def test_rounds_auto_never_calls_a_group_too_small_for_a_95_percent_ci_precise() -> None:
    """Five identical-looking values have no 95% CI of their median (n < 6), one value none at all."""
    rounds = Rounds(RunConfig(drivers=["vfs"], scenarios=["rootfs"], repeat=1, adaptive=True, max_repeat=30))
    tight = _rows("vfs", [1.0, 1.001, 0.999, 1.0, 1.0])
    rounds.watch(tight)
    assert rounds.worst_precision(("warm", 1)) == float("inf") and rounds.more(("warm", 1), 5)
    tight += _rows("vfs", [1.0])
    assert rounds.worst_precision(("warm", 1)) < 0.01 and not rounds.more(("warm", 1), 6)
    single = Rounds(RunConfig(drivers=["vfs"], scenarios=["rootfs"], repeat=1, adaptive=True))
    single.watch(_rows("vfs", [1.0]))
    assert single.more(("warm", 1), 1)


def test_rounds_auto_is_bounded_by_max_repeat_and_max_time() -> None:
    noisy = _rows("vfs", [1.0, 3.0, 0.5, 2.0, 0.7, 4.0])
    config = RunConfig(drivers=["vfs"], scenarios=["rootfs"], repeat=5, adaptive=True, max_repeat=6)
    rounds = Rounds(config)
    rounds.watch(noisy)
    assert not rounds.more(("warm", 1), 6) and rounds.facts()[0]["reason"] == "max-repeat"
    timed = Rounds(RunConfig(drivers=["vfs"], scenarios=["rootfs"], adaptive=True, max_time=10))
    timed.watch(noisy)
    assert timed.more(("warm", 1), 0)
    timed.charge(("cold", 1), 11.0)  # another phase's time is not this one's
    assert timed.more(("warm", 1), 5)
    timed.charge(("warm", 1), 11.0)
    assert not timed.more(("warm", 1), 6) and timed.facts()[0]["reason"] == "max-time"

"""`bench compare` on synthetic result sets with known truth: right about noise."""

from __future__ import annotations

import pytest

from bench import cli

from .synthetic import write_run

ONE_GROUP = ("overlay2", "create_read_write+get", 8, "")


def compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = cli.main(["compare", *args])
    return status, capsys.readouterr().out


def verdict_lines(out: str, verdict: str) -> list[str]:
    return [line for line in out.splitlines() if verdict in line and "│" in line]


@pytest.mark.parametrize("seeds", [(1, 2), (4, 4)], ids=["same-distribution", "identical-runs"])
def test_same_distribution_is_no_difference(tmp_path, capsys, seeds: tuple[int, int]) -> None:
    base = write_run(str(tmp_path / "a"), seed=seeds[0])
    new = write_run(str(tmp_path / "b"), seed=seeds[1])
    status, out = compare(capsys, base, new)
    assert status == 0, out
    assert "0 SLOWER, 0 FASTER, 16 no difference" in out and "\nno difference" in out
    assert "same configuration, machine and software" in out


def test_one_group_three_times_slower_is_exactly_that_group(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1)
    new = write_run(str(tmp_path / "b"), seed=2, slower={ONE_GROUP: 3.0})
    status, out = compare(capsys, base, new)
    assert status == 1, out
    (line,) = verdict_lines(out, "SLOWER")
    assert "overlay2" in line and "create_read_write+get" in line and "│     8 │" in line
    assert not verdict_lines(out, "FASTER")
    assert "1 SLOWER, 0 FASTER" in out
    # a threshold above the change: significant, but not a regression worth failing on
    assert compare(capsys, base, new, "--fail-above", "4")[0] == 0


def test_a_faster_group_is_reported_and_does_not_fail(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1)
    new = write_run(str(tmp_path / "b"), seed=2, slower={ONE_GROUP: 1 / 3})
    status, out = compare(capsys, base, new)
    assert status == 0, out
    assert len(verdict_lines(out, "FASTER")) == 1 and "0 SLOWER, 1 FASTER" in out


def test_too_few_repetitions_are_said_not_to_detect_anything(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1, n=3)
    new = write_run(str(tmp_path / "b"), seed=2, n=3, slower={ONE_GROUP: 3.0})
    status, out = compare(capsys, base, new)
    assert status == 0 and "too few repetitions" in out


def test_a_missing_driver_and_a_changed_option_are_listed_first(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1, drivers=("vfs", "overlay2", "btrfs"))
    new = write_run(
        str(tmp_path / "b"), seed=2, drivers=("vfs", "overlay2"), config={"storage_opts": {"vfs.copy": "reflink"}}
    )
    status, out = compare(capsys, base, new)
    assert status == 0, out
    head = out.split("median NEW/BASE")[0]
    assert "driver btrfs only in BASE" in head
    assert "config.storage_opts: {} -> {'vfs.copy': 'reflink'}" in head
    assert "config.drivers" in head and "drivers measured" in head
    assert "btrfs" not in out.split("median NEW/BASE")[1]


def test_a_missing_group_and_a_changed_depth_sweep_are_listed(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1)
    new = write_run(
        str(tmp_path / "b"), seed=2, config={"depths": [1]}, without=frozenset({("overlay2", "put", 8, "")})
    )
    status, out = compare(capsys, base, new)
    assert status == 0, out
    assert "config.depths: [1, 8] -> [1]" in out
    assert "group only in BASE: overlay2 rootfs put depth 8 warm" in out


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"config": {"workload": "mixed"}}, "config.workload"),
        ({"machine": {"cpu_model": "Other CPU"}}, "machine.cpu_model"),
    ],
)
def test_a_different_workload_or_machine_is_refused(tmp_path, capsys, change, what) -> None:
    base = write_run(str(tmp_path / "a"), seed=1)
    new = write_run(str(tmp_path / "b"), seed=2, **change)
    status, out = compare(capsys, base, new)
    assert status == 2 and "refused" in out and what in out
    status, out = compare(capsys, base, new, "--allow-different")
    assert status == 0 and f"differs: {what}" in out


def test_split_of_one_run_is_an_a_a_check(tmp_path, capsys) -> None:
    run = write_run(str(tmp_path / "a"), seed=3, n=30)
    status, out = compare(capsys, "--split", run)
    assert status == 0, out
    assert "even repetitions" in out and "15/15" in out and "0 SLOWER, 0 FASTER" in out


def test_compare_wants_two_runs_or_a_split(tmp_path, capsys) -> None:
    run = write_run(str(tmp_path / "a"))
    assert cli.main(["compare", run]) == 2
    assert cli.main(["compare", run, run, "--split", run]) == 2


def test_a_whole_scenario_moving_for_every_driver_is_called_the_machine(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1)
    everywhere = {(d, "true", 2, x): 1.5 for d in ("vfs", "overlay2") for x in ("oci", "native")}
    new = write_run(str(tmp_path / "b"), seed=2, slower=everywhere)
    status, out = compare(capsys, base, new)
    assert status == 1  # still reported: the rows really are slower, for a reason two runs cannot name
    assert "warning: exec: median ratio 1.5" in out and "every driver moved" in out
    assert "shift: rootfs: median ratio 1.0" in out
    assert "SLOWER (whole scenario): exec" in out and "0 SLOWER, 0 FASTER" in out
    status, out = compare(capsys, base, new, "--absolute")
    assert status == 1 and "SLOWER (whole scenario)" not in out and "0 SLOWER" not in out


def test_a_machine_shift_below_the_threshold_is_no_difference(tmp_path, capsys) -> None:
    """Two identical runs on a shared machine: process start-up 15% slower for every driver
    in the second (load from others) is not a regression; raw ratios would call it one."""
    base = write_run(str(tmp_path / "a"), seed=1, n=30)
    everywhere = {(d, "true", 2, x): 1.15 for d in ("vfs", "overlay2") for x in ("oci", "native")}
    new = write_run(str(tmp_path / "b"), seed=2, n=30, slower=everywhere)
    status, out = compare(capsys, base, new)
    assert status == 0, out
    assert "0 SLOWER, 0 FASTER" in out and "whole scenario" not in out


def test_one_group_slower_inside_a_shifted_scenario_is_still_found(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1, n=30)
    shifted = {(d, "true", 2, x): 1.15 for d in ("vfs", "overlay2") for x in ("oci", "native")}
    new = write_run(str(tmp_path / "b"), seed=2, n=30, slower={**shifted, ("vfs", "true", 2, "oci"): 3.0})
    status, out = compare(capsys, base, new)
    assert status == 1, out
    (line,) = verdict_lines(out, "SLOWER")
    assert "vfs" in line and "oci" in line


def test_hosts_of_one_run_compare_side_by_side(tmp_path, capsys) -> None:
    run = write_run(str(tmp_path / "a"), seed=1, hosts={"fast": 1.0, "slow": 3.0})
    status, out = compare(capsys, "--hosts", "fast", "slow", run)
    assert status == 1, out  # every group is three times slower on `slow`
    assert f"{run} on fast" in out and f"{run} on slow" in out
    assert "differs: machine.hostname: 'fast' -> 'slow'" in out and "machine.cores" in out  # listed, not refused
    # every group three times slower: the whole of every scenario moved (the machine is the change)
    assert "0 SLOWER, 0 FASTER" in out and out.count("SLOWER (whole scenario)") == 3
    assert len(verdict_lines(compare(capsys, "--hosts", "fast", "slow", run, "--absolute")[1], "SLOWER")) == 16
    status, out = compare(capsys, "--hosts", "fast", "nowhere", run)
    assert status == 2 and "no host nowhere (hosts: fast, slow)" in out


def test_two_cluster_runs_compare_host_by_host(tmp_path, capsys) -> None:
    base = write_run(str(tmp_path / "a"), seed=1, hosts={"h1": 1.0, "h2": 1.0})
    new = write_run(str(tmp_path / "b"), seed=2, hosts={"h1": 1.0, "h2": 1.0}, slower={ONE_GROUP: 3.0})
    status, out = compare(capsys, base, new)
    assert status == 1, out
    slower = verdict_lines(out, "SLOWER")
    assert len(slower) == 2 and {line.split("│")[1].strip() for line in slower} == {"h1", "h2"}
    other = write_run(str(tmp_path / "c"), seed=2, hosts={"h1": 1.0, "h3": 1.0})
    status, out = compare(capsys, base, other)
    assert status == 2 and "the runs measured different hosts" in out


def test_peers_and_filesystems_are_never_pooled_with_strata(tmp_path, capsys) -> None:
    """dockerd's rows (five times slower) and a second backing filesystem are groups of their
    own: 20 values a side each, and a change on xfs alone is found on xfs alone."""
    where = {"systems": {"strata": 1.0, "dockerd 20.10.24": 5.0}, "filesystems": {"ext4": 1.0, "xfs": 1.3}}
    base = write_run(str(tmp_path / "a"), seed=1, **where)
    new = write_run(str(tmp_path / "b"), seed=2, slower={(*ONE_GROUP, "xfs"): 3.0}, **where)
    status, out = compare(capsys, base, new)
    assert status == 1, out
    rows = [line for line in out.splitlines() if "│" in line and "create_read_write+get" in line]
    assert len(rows) == 2 * 2 * 2 * 2  # 2 systems x 2 filesystems x 2 drivers x 2 depths
    assert all("20/20" in line for line in rows)
    slower = verdict_lines(out, "SLOWER")
    assert len(slower) == 2 and all("xfs" in line and "overlay2" in line and "│     8 │" in line for line in slower)
    assert {line.split("│")[2].strip() for line in slower} == {"strata", "dockerd 20.10.24"}


def test_half_the_drivers_changing_leaves_the_other_half_alone(tmp_path, capsys) -> None:
    """overlay2 1.5x slower on every exec group, vfs untouched: that is no common shift, and
    vfs must not come out FASTER by dividing out half of overlay2's change."""
    base = write_run(str(tmp_path / "a"), seed=1)
    half = {("overlay2", "true", 2, x): 1.5 for x in ("oci", "native")}
    new = write_run(str(tmp_path / "b"), seed=2, slower=half)
    status, out = compare(capsys, base, new)
    assert status == 1, out
    assert not verdict_lines(out, "FASTER")
    slower = verdict_lines(out, "SLOWER")
    assert len(slower) == 2 and all("overlay2" in line and "true" in line for line in slower)
    assert "exec: median ratio" in out and "no common shift, groups judged on raw ratios" in out


def test_an_unmoved_group_in_a_shifted_scenario_is_not_called_faster(tmp_path, capsys) -> None:
    """Every rootfs group but one 1.3x slower: the one that did not move is not FASTER on its
    own change (ratio / 1.3 = 0.77): its raw change is not significant."""
    base = write_run(str(tmp_path / "a"), seed=1)
    groups = [(d, step, depth, "") for d in ("vfs", "overlay2") for step in ("create_read_write+get", "put")
              for depth in (1, 8)]  # fmt: skip
    new = write_run(str(tmp_path / "b"), seed=2, slower={g: 1.3 for g in groups if g != ("vfs", "put", 1, "")})
    status, out = compare(capsys, base, new)
    assert "rootfs: median ratio 1.3" in out and "7 agree on one ratio within their CIs" in out
    assert not verdict_lines(out, "FASTER") and not verdict_lines(out, "SLOWER")
    assert status == 1 and "SLOWER (whole scenario): rootfs" in out

"""`bench history`: runs ordered by commit, steps flagged only beyond noise."""

from __future__ import annotations

import subprocess

from bench import cli, history

from .synthetic import write_run

STEP = ("vfs", "put", 8, "")


def _runs(tmp_path, factors: list[float]) -> list[str]:
    """One synthetic run per factor (applied to STEP), started an hour apart."""
    return [
        write_run(
            str(tmp_path / f"run{i}"),
            seed=10 + i,
            slower={STEP: factor},
            run_id=f"2026010{i + 1}T000000Z-000{i}",
            commit=f"{i + 1:x}" * 40,
            started=f"2026-01-0{i + 1}T00:00:00+00:00",
        )
        for i, factor in enumerate(factors)
    ]


def test_a_step_is_flagged_exactly_where_it_happened(tmp_path, capsys) -> None:
    dirs = _runs(tmp_path, [1.0, 1.0, 2.0, 2.0])
    out = tmp_path / "history"
    assert cli.main(["history", *reversed(dirs), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ordered by start time" in text  # these commits are not in this repository
    assert "1 step(s) flagged" in text
    (row,) = [line for line in text.splitlines() if "│" in line and "vfs" in line]
    assert "put" in row and "22222222 2026-01-02" in row and "33333333 2026-01-03" in row
    assert row.count("n=20") == 2 and row.count("..") == 2  # each side's n and median CI
    assert (out / "step_000.png").exists() and (out / "step_000.pdf").exists()
    assert (out / "history.csv").read_text().count("\n") > 4 * 16


def test_noise_between_runs_is_not_a_step(tmp_path, capsys) -> None:
    assert cli.main(["history", *_runs(tmp_path, [1.0, 1.05, 0.97]), "--out", str(tmp_path / "h")]) == 0
    assert "0 step(s) flagged" in capsys.readouterr().out


def test_one_run_hit_by_load_is_a_spike_not_two_steps(tmp_path, capsys) -> None:
    assert cli.main(["history", *_runs(tmp_path, [1.0, 3.0, 1.0, 1.0]), "--out", str(tmp_path / "h")]) == 0
    assert "0 step(s) flagged" in capsys.readouterr().out


def test_runs_are_ordered_by_git_log_when_their_commits_are_known(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    commits = []
    for i in range(2):
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", f"c{i}"], check=True)
        commits.append(subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip())
    # the older commit was measured later: commit order wins over start time
    late = write_run(str(tmp_path / "late"), commit=commits[0], started="2026-02-01T00:00:00+00:00")
    early = write_run(str(tmp_path / "early"), commit=commits[1] + "-dirty", started="2026-01-01T00:00:00+00:00")
    ordered, how = history.order_runs([early, late], repo=str(repo))
    assert how == "git log" and [r.directory for r in ordered] == [late, early]
    assert ordered[1].label.startswith(commits[1][:8] + "+")

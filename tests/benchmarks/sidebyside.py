"""Whole-command benchmarks of strata beside a peer (podman, dockerd), measured in one run.

Rounds alternate between the contenders, so the shared machine's load falls on all of
them alike; every contender gets an untimed reset before each of its rounds. The figures
(n, median, 95% CI of the median, and each contender's median over the reference's with
its CI) come from bench.stats, the one place that says what a CI is, and go into the
benchmark's extra_info and to stdout. Under `--benchmark-disable` (`make test`) each
contender runs once: a smoke test that every command works, not a measurement.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench import stats

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def strata_command(pycache: str, *global_options: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the `strata` command as an installed package runs it: with its
    bytecode cached (in `pycache`, filled by the first run: this machine's shells set
    PYTHONDONTWRITEBYTECODE, which would make every run compile every module)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=REPO, PYTHONPYCACHEPREFIX=pycache)
    return [sys.executable, "-m", "engine.cli", *global_options], env


def check(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> None:
    """Run a whole command; it must succeed."""
    done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.decode(errors='replace')}"


@dataclass
class Contender:
    """One command under test: `run` is timed, `reset` (untimed) runs before each round."""

    name: str
    run: Callable[[], object]
    reset: Callable[[], object] = lambda: None
    times: list[float] = field(default_factory=list)


def rounds_for(benchmark, rounds: int) -> int:
    """`rounds`, or 1 when timing is off (the fixture knows; the option may be overridden)."""
    return 1 if benchmark.disabled else rounds


def measure(benchmark, contenders: list[Contender], *, rounds: int,
            reference: str | None = None, warmup: int = 1, goal: float | None = None) -> dict[str, float]:
    """Time every contender `rounds` times, alternating; their medians (seconds).

    `reference` names the peer the ratios are taken against (absent: no peer installed,
    and extra_info says so); `goal` is the ratio the issue asks for, recorded beside it.
    """
    n = rounds_for(benchmark, rounds)
    for _ in range(warmup if n > 1 else 0):
        for c in contenders:
            c.reset()
            c.run()
    for _ in range(n):
        for c in contenders:
            c.reset()
            start = time.perf_counter()
            c.run()
            c.times.append(time.perf_counter() - start)
    medians = {}
    lines = []
    for c in contenders:
        values = np.asarray(c.times)
        median = float(np.median(values))
        low, high = stats.median_ci(values)
        medians[c.name] = median
        benchmark.extra_info[c.name] = {"n": len(values), "median_s": median, "ci95_s": [low, high]}
        lines.append(f"{c.name} {median * 1000:.0f} ms [{low * 1000:.0f}, {high * 1000:.0f}] n={len(values)}")
    by_name = {c.name: c for c in contenders}
    if reference in by_name:
        base = np.asarray(by_name[reference].times)
        for c in contenders:
            if c.name == reference:
                continue
            ratio = medians[c.name] / medians[reference]
            low, high = stats.ratio_ci(base, np.asarray(c.times))
            benchmark.extra_info[f"{c.name}_over_{reference}"] = {"ratio": ratio, "ci95": [low, high], "goal": goal}
            lines.append(f"{c.name}/{reference} {ratio:.2f} [{low:.2f}, {high:.2f}] (goal <= {goal})")
    else:
        benchmark.extra_info["note"] = "the peer is not installed: strata measured alone"
    print(f"\n{benchmark.name}: " + "; ".join(lines))
    first = contenders[0]
    benchmark.pedantic(first.run, setup=first.reset, rounds=1, iterations=1)  # the table row: strata's command
    return medians

"""One real `bench run --quick` (vfs, warm and cold cache) shared by the harness tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `bench` command line in a subprocess, from this checkout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class QuickRun:
    out: str
    scratch: str
    proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    base = tmp_path_factory.mktemp("bench-quick")
    out, scratch = str(base / "results"), str(base / "scratch")
    proc = bench("run", "--driver", "vfs", "--quick", "--cache", "both", "--out", out, "--scratch", scratch)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return QuickRun(out, scratch, proc)

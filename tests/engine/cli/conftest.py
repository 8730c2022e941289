"""The `strata` command as a real subprocess (`python -m engine.cli`) on a root."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import engine as engine_pkg

REPO = os.path.dirname(os.path.dirname(engine_pkg.__file__))


def _caller(root: str, default_driver: str):
    def call(*args: str, stdin: bytes | None = None, driver: str = default_driver) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine.cli", "--root", root, "--driver", driver, *args],
                              input=stdin, capture_output=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)

    call.root = root  # type: ignore[attr-defined]
    call.driver = default_driver  # type: ignore[attr-defined]
    return call


@pytest.fixture
def strata(driver_name: str, driver_root: str):
    """The CLI on a root of every registered driver."""
    return _caller(driver_root, driver_name)


@pytest.fixture
def strata_vfs(tmp_path):
    return _caller(str(tmp_path / "root"), "vfs")

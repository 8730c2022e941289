"""`strata run` imports only what running a container needs (issue #21: the standalone
CLI's start-up is mostly Python importing the engine).

The command runs as a real subprocess with `-X importtime`, which lists every module the
interpreter imported; none of the heavy libraries other commands use may be among them.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.engine.conftest import Images

from .conftest import REPO

# rich (load's progress bar), pandas/numpy/scipy (bench), requests/urllib3 (registry),
# zstandard (zstd layers), docker (the SDK), concurrent.futures (pull's downloads):
# none is needed to run a container.
HEAVY = ("rich", "pandas", "numpy", "scipy", "requests", "urllib3", "zstandard", "docker", "concurrent", "matplotlib",
         "dask", "pyroute2")


def _imported(argv: list[str]) -> set[str]:
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", *argv], capture_output=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    lines = [line for line in done.stderr.decode().splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first line is the header


def test_run_imports_no_heavy_module(images: Images, tmp_path) -> None:
    root = ["--root", str(tmp_path / "root"), "--driver", "vfs", "-o", "exec.driver=native"]
    subprocess.run([sys.executable, "-m", "engine.cli", *root, "load", "-i", images.busybox_tar],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    modules = _imported([*root, "run", "--rm", "busybox", "true"])
    assert "engine.containers.jobs" in modules  # the listing is real
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"`strata run` imported {heavy}"

"""ENOSPC: a load that fills the engine's filesystem fails with an error naming that
filesystem, without a traceback, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import engine as engine_pkg
from engine.engine import Engine
from engine.images import testimages
from tests.engine.conftest import assert_clean

REPO = os.path.dirname(os.path.dirname(engine_pkg.__file__))


def test_a_full_filesystem_is_a_clean_error(make_backing, tmp_path) -> None:
    tiny = make_backing("ext4", 24 << 20)
    root = os.path.join(tiny.mountpoint, "root")
    base, multi = testimages.multilayer(str(tmp_path / "build"), small_files=5, big_size=40 << 20)
    archive = testimages.write(str(tmp_path / "big.tar"), [base, multi])  # outside the tiny filesystem
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--root", root, "--driver", "vfs", "load", "-q",
                           "-i", archive], capture_output=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"no space left on device: the ext4 filesystem at {tiny.mountpoint} " in err, err
    with Engine(root, "vfs") as after:
        assert_clean(after, base, multi)
        assert os.listdir(os.path.join(root, "tmp")) == []

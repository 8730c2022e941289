"""ENOSPC: a load that fills the engine's filesystem fails with an error naming that
filesystem, without a traceback, and leaves nothing behind."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys

import engine as engine_pkg
from engine.engine import Engine
from engine.images import testimages
from graphdrivers.archive.build import LayerBuilder
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


def test_a_gzip_bomb_streams_until_the_filesystem_is_full_then_fails_cleanly(make_backing, tmp_path) -> None:
    """64 MiB of zeros in a ~70 KB gzip layer, loaded onto a 24 MiB filesystem."""
    plain = str(tmp_path / "zeros.tar")
    bomb = LayerBuilder(mtime=testimages.MTIME)
    bomb.big_file("zeros", 64 << 20, b"\0" * (1 << 20))
    bomb.write(plain)
    diff_id = testimages.from_layers([], [plain]).diff_ids[0]
    packed = str(tmp_path / "zeros.tar.gz")
    with open(plain, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.unlink(plain)
    assert os.path.getsize(packed) < 1 << 20
    image = testimages.from_layers(["bomb:latest"], [packed], diff_ids=[diff_id])
    tiny = make_backing("ext4", 24 << 20)
    root = os.path.join(tiny.mountpoint, "root")
    archive = testimages.write(str(tmp_path / "bomb.tar"), [image])
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--root", root, "--driver", "vfs", "load", "-q",
                           "-i", archive], capture_output=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in err, err
    assert f"no space left on device: the ext4 filesystem at {tiny.mountpoint} " in err, err
    with Engine(root, "vfs") as after:
        assert after.graph.images() == [] and after.db.query("SELECT chain_id FROM layers") == []

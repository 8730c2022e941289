"""Bad values of `strata run`'s limit options, and a STRATA_HOST the command cannot use:
typed refusals naming the option, never a traceback, and nothing created."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.engine.cli.conftest import REPO
from tests.engine.conftest import Images


@pytest.mark.parametrize(("option", "named"), [
    (["-m", "lots"], "--memory"),
    (["-m", "64m", "--memory-swap", "x"], "--memory-swap"),
    (["--cpus", "many"], "--cpus"),
    (["--mount", "type=tmpfs,target=/t,tmpfs-mode=99"], "tmpfs-mode"),
    (["--mount", "type=tmpfs,target=/t,tmpfs-size=big"], "tmpfs-size"),
    (["--cpus", "1", "--cpu-period", "50000"], "cannot both be set"),
])
def test_bad_limit_values_are_refused_by_name(strata_vfs, images: Images, option: list[str], named: str) -> None:
    assert strata_vfs("load", "-i", images.busybox_tar).returncode == 0
    result = strata_vfs("-o", "exec.driver=native", "run", "--rm", *option, "busybox", "true")
    err = result.stderr.decode()
    assert result.returncode == 125 and named in err and "Traceback" not in err, err
    assert strata_vfs("ps", "-aq").stdout == b""


def test_strata_host_is_refused_where_it_cannot_be_honoured(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": REPO, "STRATA_HOST": "unix:///nonexistent.sock"}
    result = subprocess.run([sys.executable, "-m", "engine.cli", "--root", str(tmp_path / "root"), "-s", "vfs", "ps"],
                            capture_output=True, env=env, timeout=60)
    assert result.returncode == 2 and b"STRATA_HOST is for `run`" in result.stderr, result.stderr
    assert not os.path.exists(tmp_path / "root")  # no local engine was opened instead

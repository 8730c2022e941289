"""Many clients at once: the daemon serves a burst of `docker run --rm` without a refused
connection, and every container, mount and process is gone afterwards."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from engine.engine import Engine
from graphdrivers import mountutil
from tests.engine.api.conftest import Daemon

CONCURRENT_RUNS = 100
CLI_RUNS = 10  # real docker CLI processes among them; the rest are docker-py clients (cheaper on 2 cores)


def _processes_under(root: str) -> list[str]:
    """Processes whose command line names the root (container monitors, runtimes)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if root in args and "engine.cli" not in args:
            found.append(f"{pid} {args}")
    return found


@pytest.mark.parametrize("driver_name", ["overlay2"])
def test_100_concurrent_docker_run_rm(daemon: Daemon, busybox_tar: str) -> None:
    assert daemon.docker("load", "-i", busybox_tar).returncode == 0
    start = threading.Barrier(CONCURRENT_RUNS - CLI_RUNS + 1)

    def sdk_run(_: int) -> bytes:
        client = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=300)
        try:
            start.wait()
            return client.containers.run("busybox", ["true"], remove=True)
        finally:
            client.close()

    began = time.monotonic()
    with ThreadPoolExecutor(CONCURRENT_RUNS - CLI_RUNS) as pool:
        sdk = [pool.submit(sdk_run, i) for i in range(CONCURRENT_RUNS - CLI_RUNS)]
        env = {**os.environ, "DOCKER_HOST": daemon.host,
               "DOCKER_CONFIG": os.path.join(daemon.root, "..", "dockercfg")}
        start.wait()
        cli = [subprocess.Popen(["docker", "run", "--rm", "busybox", "true"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(CLI_RUNS)]
        cli_results = [(p.wait(300), p.stderr.read()) for p in cli]
        sdk_results = [f.result() for f in sdk]
    print(f"{CONCURRENT_RUNS} concurrent runs took {time.monotonic() - began:.1f} s")
    assert cli_results == [(0, b"")] * CLI_RUNS
    assert sdk_results == [b""] * (CONCURRENT_RUNS - CLI_RUNS)

    assert daemon.docker("ps", "-aq").stdout == b""
    assert daemon.stop() == 0
    assert mountutil.mounts_under(daemon.root) == []
    assert _processes_under(daemon.root) == []
    with Engine(daemon.root, daemon.driver) as engine:
        assert engine.containers.ids() == []
        assert os.listdir(os.path.join(daemon.root, "containers")) == []
        image_layers = [layer.chain_id for layer in engine.graph.get_image("busybox").layers]
        assert [layer.chain_id for layer in engine.graph.layers()] == image_layers
        layer_dirs = [name for name in os.listdir(engine.driver.home) if name != "l"]
        assert len(layer_dirs) == len(image_layers)  # no container layer (nor its -init) left

"""A real `strata daemon` subprocess on a loop-mounted root, the busybox image, a registry."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import graphdrivers
from engine.images import testimages
from graphdrivers import mountutil
from tests.support.registry_server import RegistryServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@dataclass
class Daemon:
    proc: subprocess.Popen
    root: str
    socket: str
    driver: str

    @property
    def host(self) -> str:
        return "unix://" + self.socket

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """The real docker CLI against this daemon (SIGKILL on timeout: docker run proxies SIGTERM)."""
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": os.path.join(self.root, "..", "dockercfg")}
        return subprocess.run(["docker", *args], input=input, capture_output=True, env=env, timeout=timeout)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@contextlib.contextmanager
def loaded_daemon(root: str, busybox_tar: str, exec_driver: str | None = "native") -> Iterator[Daemon]:
    """A vfs daemon on a new `root` with busybox loaded; stopped after, its root left with no mount."""
    os.makedirs(root)
    daemon = start_daemon(root, "vfs", exec_driver=exec_driver)
    try:
        assert daemon.docker("load", "-i", busybox_tar).returncode == 0
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            assert daemon.stop() == 0
        assert mountutil.mounts_under(root) == []


def start_daemon(root: str, driver: str, *daemon_args: str, netns: str | None = None,
                 exec_driver: str | None = "native", exec_runtime: str | None = None) -> Daemon:
    """`strata daemon` on `root` (`exec_driver` None keeps the engine's default: oci, runc;
    `exec_runtime` names the oci driver's runtime),
    in the machine's network namespace with `--bridge none` (no test adds an interface or a
    rule there), or with its default bridge inside the namespace file `netns`."""
    sock = os.path.join(root, "strata.sock")
    exec_opt = ["-o", f"exec.driver={exec_driver}"] if exec_driver else []
    exec_opt += ["-o", f"exec.runtime={exec_runtime}"] if exec_runtime else []
    log = open(os.path.join(os.path.dirname(root), "daemon.log"), "wb")
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "engine.cli", "--root", root, "-s", driver, *exec_opt,
         "daemon", "-H", "unix://" + sock, *(() if netns else ("--bridge", "none")), *daemon_args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": REPO})
    log.close()
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            with open(os.path.join(os.path.dirname(root), "daemon.log")) as f:
                raise RuntimeError(f"strata daemon did not start: {f.read()[-2000:]}")
        time.sleep(0.02)
    return Daemon(proc, root, sock, driver)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("api-images")
    return testimages.write(str(work / "busybox.tar"), [testimages.busybox(str(work / "build"))])


@pytest.fixture
def execdriver_name() -> str:
    """The daemon's execdriver; a test parametrizes it to run on both."""
    return "native"


@pytest.fixture
def exec_runtime() -> str | None:
    """The oci execdriver's runtime (None: runc); a test parametrizes it to run on crun."""
    return None


@pytest.fixture
def daemon(driver_name: str, execdriver_name: str, exec_runtime: str | None, make_backing) -> Iterator[Daemon]:
    fs = make_backing(graphdrivers.registration(driver_name).backing_fs)
    root = os.path.join(fs.mountpoint, "root")
    os.makedirs(root)
    d = start_daemon(root, driver_name, exec_driver=execdriver_name, exec_runtime=exec_runtime)
    try:
        yield d
    finally:
        if d.proc.poll() is None:
            assert d.stop() == 0
        assert mountutil.mounts_under(os.path.join(root, driver_name)) == []


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(str(tmp_path_factory.mktemp("api-registry"))) as server:
        yield server

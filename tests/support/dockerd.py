"""A private Debian dockerd (docker.io) for benchmarks that measure strata beside Docker.

Each one has its own data root in a directory the caller owns, and its exec root, pidfile
and unix socket in a private directory under /run (unix socket paths are short), no
iptables and no bridge, so it neither touches nor depends on a system
daemon; its managed containerd lives under the exec root and stops with it. Images go in
from archives (`docker load`) or from a loopback registry, never from a public one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from types import TracebackType

import pytest

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # the client that ships with that dockerd


def available() -> bool:
    """Whether docker.io is installed (`make test` installs it)."""
    return os.access(DOCKERD, os.X_OK) and os.access(DOCKER, os.X_OK)


def require() -> None:
    """Fail where docker.io is missing: a side-by-side benchmark without its peer would
    measure strata alone and pass (a skip in disguise); `make test` installs it."""
    if not available():
        pytest.fail(f"{DOCKERD} and {DOCKER} are needed (docker.io, which `make test` installs)")


class PrivateDockerd:
    """`dockerd` with its data root `directory`/data; `stop` (or leaving the `with`) ends it
    and its containerd and removes every mount it left and both directories."""

    def __init__(self, directory: str, storage_driver: str = "overlay2") -> None:
        self.directory = directory
        self.storage_driver = storage_driver
        self.data_root = os.path.join(directory, "data")
        self.run_dir = tempfile.mkdtemp(prefix="strata-dockerd-", dir="/run")
        self.exec_root = os.path.join(self.run_dir, "exec")
        self.socket = os.path.join(self.run_dir, "docker.sock")
        self.host = "unix://" + self.socket
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> PrivateDockerd:
        os.makedirs(self.data_root, exist_ok=True)
        os.makedirs(self.exec_root, exist_ok=True)
        log = open(os.path.join(self.directory, "dockerd.log"), "wb")
        self.proc = subprocess.Popen(
            [DOCKERD, "--data-root", self.data_root, "--exec-root", self.exec_root,
             "--pidfile", os.path.join(self.run_dir, "dockerd.pid"), "--host", self.host,
             "--storage-driver", self.storage_driver, "--iptables=false", "--ip-masq=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while self.docker("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(f"dockerd did not start: {log}")
            time.sleep(0.1)
        return self

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        """The docker client against this daemon."""
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": os.path.join(self.directory, "cfg")}
        done = subprocess.run([DOCKER, *args], env=env, capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "dockerd.log"), errors="replace") as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._unmount_leftovers()
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _unmount_leftovers(self) -> None:
        """Mounts a killed daemon left (its overlay mounts, the netns and plugin bind mounts)."""
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points if p.startswith((self.directory + "/", self.run_dir + "/"))),
                            key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)

    def __enter__(self) -> PrivateDockerd:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

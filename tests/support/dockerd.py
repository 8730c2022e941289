"""A private Debian dockerd (docker.io) for benchmarks that measure strata beside Docker.

The daemon is bench's peer (`bench.peers.dockerd.Dockerd`): its own containerd, data root,
exec root, pidfile and unix socket, an empty config file, no iptables and no bridge, so it
neither touches nor depends on a system daemon, and the tests measure the same dockerd
`bench run --peer dockerd` does. Images go in from archives (`docker load`) or from a
loopback registry, never from a public one. This module only adapts it to the tests'
calls (`docker(...)`, `host`, `pid()`, a context manager).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from types import TracebackType

import pytest

from bench.peers.dockerd import CLIENT as DOCKER  # the client that ships with that dockerd
from bench.peers.dockerd import Dockerd

DOCKERD = "/usr/sbin/dockerd"


def available() -> bool:
    """Whether docker.io is installed (`make test` installs it)."""
    return os.access(DOCKERD, os.X_OK) and os.access(DOCKER, os.X_OK)


def require() -> None:
    """Fail where docker.io is missing: a side-by-side benchmark without its peer would
    measure strata alone and pass (a skip in disguise); `make test` installs it."""
    if not available():
        pytest.fail(f"{DOCKERD} and {DOCKER} are needed (docker.io, which `make test` installs)")


class PrivateDockerd:
    """bench's dockerd peer with its data under `directory`; `stop` (or leaving the `with`)
    ends it and its containerd and removes every mount it left and its directories."""

    def __init__(self, directory: str, storage_driver: str = "overlay2") -> None:
        self.directory = directory
        self.peer = Dockerd(storage_driver, os.path.join(directory, "data"))  # strata's driver names match dockerd's
        self.host = "unix://" + self.peer.socket

    def start(self) -> PrivateDockerd:
        try:
            self.peer.start()
        except BaseException:
            self.stop()
            raise
        return self

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        """The docker client against this daemon."""
        done = subprocess.run(self.peer.argv(*args), env=self.peer.env(), capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done

    def pid(self) -> int:
        with open(os.path.join(self.peer.run_dir, "dockerd.pid")) as f:
            return int(f.read())

    def log(self) -> str:
        return self.peer.log_tail()

    def stop(self) -> None:
        self.peer.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateDockerd:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

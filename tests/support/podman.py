"""podman (Debian's 4.3) on private storage, for benchmarks that measure strata beside it.

The storage and configuration are bench's podman peer's (`bench.peers.podman.Podman`): its
graph root in a directory the caller owns, its run root in a private directory under /run,
the overlay driver, runc and cgroupfs, empty config files of its own (neither
/etc/containers nor a user's configuration changes what is measured) and, for `run`, the
ulimits this machine needs. `remove` deletes every container and image there and unmounts
what podman left, so a test leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from bench.peers.podman import ULIMITS, Podman

PODMAN = "/usr/bin/podman"


def available() -> bool:
    return os.access(PODMAN, os.X_OK)


def require() -> None:
    """Fail where podman is missing: a side-by-side benchmark without its peer would
    measure strata alone and pass (a skip in disguise); `make test` installs it."""
    if not available():
        pytest.fail(f"{PODMAN} is needed (podman, which `make test` installs)")


class PrivatePodman:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.peer = Podman("overlay2", os.path.join(directory, "data"))
        try:
            self.peer.start()  # writes its config files and checks the storage driver
        except BaseException:
            self.remove()
            raise
        self.env = self.peer.env()  # every command needs it: it points podman at those files

    def command(self, *args: str) -> list[str]:
        """The argv of `podman ARGS` on this storage (`run` gets the limits this machine needs)."""
        extra = ULIMITS if args and args[0] == "run" else ()
        return self.peer.argv(*args[:1], *extra, *args[1:])

    def podman(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(self.command(*args), env=self.env, capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done

    def remove(self) -> None:
        if self.peer.version:
            self.podman("rmi", "--all", "--force", check=False)
        self.peer.close()  # containers, leftover processes, mounts, its directories
        shutil.rmtree(self.directory, ignore_errors=True)

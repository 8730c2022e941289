"""podman (Debian's 4.3) on private storage, for benchmarks that measure strata beside it.

Its graph root lives in a directory the caller owns and its run root in a private temp
directory (podman refuses a run root longer than 50 characters), with the overlay
driver; on this machine it needs runc, cgroupfs and explicit nofile/nproc ulimits (its
defaults exceed what the container's limits allow). `remove` deletes every container and
image there and unmounts what podman left, so a test leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

PODMAN = "/usr/bin/podman"
RUN_LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")


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
        self.runroot = tempfile.mkdtemp(prefix="strata-podman-", dir="/run")
        self.argv = [PODMAN, "--root", os.path.join(directory, "root"), "--runroot", self.runroot,
                     "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--storage-driver", "overlay",
                     "--events-backend", "none"]

    def command(self, *args: str) -> list[str]:
        """The argv of `podman ARGS` on this storage (`run` gets the limits this machine needs)."""
        extra = RUN_LIMITS if args and args[0] == "run" else ()
        return [*self.argv, *args[:1], *extra, *args[1:]]

    def podman(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(self.command(*args), capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done

    def remove(self) -> None:
        self.podman("rm", "--all", "--force", check=False)
        self.podman("rmi", "--all", "--force", check=False)
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points if p.startswith((self.directory + "/", self.runroot + "/"))),
                            key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)

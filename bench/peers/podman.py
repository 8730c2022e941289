"""podman 4.3 as a peer: daemonless, with its own `--root`, `--runroot` and config files.

Every command names the roots, the storage driver, runc and cgroupfs (this host's hybrid
cgroup layout needs both), and the environment points podman at empty config files of
the run's own, so neither /etc/containers nor a user's configuration changes what is
measured. Containers get `--network none` and fixed ulimits (podman's defaults fail here).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess

from . import Peer, PeerFailed

log = logging.getLogger(__name__)

ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
STORAGE_CONF = '[storage]\ndriver = "{driver}"\ngraphroot = "{root}"\nrunroot = "{runroot}"\n'
REGISTRIES_CONF = 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'


class Podman(Peer):
    name = "podman"
    DRIVERS = {"overlay2": "overlay", "vfs": "vfs", "btrfs": "btrfs"}
    CREATE_FLAGS = ("--network", "none", *ULIMITS)
    PULL_FLAGS = ("--tls-verify=false",)
    binary = "podman"  # resolved on PATH by start()

    def argv(self, *args: str) -> list[str]:
        return [
            self.binary, "--root", os.path.join(self.data_dir, "storage"), "--runroot",
            os.path.join(self.run_dir, "runroot"), "--tmpdir", os.path.join(self.run_dir, "tmp"),
            "--storage-driver", self.storage_driver, "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            "--events-backend", "none", "--network-config-dir", os.path.join(self.run_dir, "networks"), *args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var, name in (("CONTAINERS_CONF", "containers.conf"), ("CONTAINERS_STORAGE_CONF", "storage.conf"),
                          ("CONTAINERS_REGISTRIES_CONF", "registries.conf")):
            env[var] = os.path.join(self.run_dir, name)
        return env

    def start(self) -> None:
        binary = shutil.which("podman")
        if binary is None or shutil.which("runc") is None or shutil.which("conmon") is None:
            raise PeerFailed("podman: podman, runc or conmon not found (install podman: make deps)")
        self.binary = binary
        storage = STORAGE_CONF.format(driver=self.storage_driver, root=os.path.join(self.data_dir, "storage"),
                                      runroot=os.path.join(self.run_dir, "runroot"))
        for name, text in (("containers.conf", ""), ("storage.conf", storage), ("registries.conf", REGISTRIES_CONF)):
            with open(os.path.join(self.run_dir, name), "w") as f:
                f.write(text)
        info = subprocess.run(self.argv("info", "--format", "{{.Store.GraphDriverName}} {{.Version.Version}}"),
                              capture_output=True, text=True, env=self.env())
        if info.returncode != 0:
            raise PeerFailed(f"podman info failed: {info.stderr.strip()}")
        driver, _, version = info.stdout.strip().partition(" ")
        if driver != self.storage_driver:
            raise PeerFailed(f"podman runs storage driver {driver!r}, not {self.storage_driver!r}")
        match = re.match(r"\d+\.\d+\.\d+", version)
        self.version = match.group(0) if match else version or "unknown"
        log.info("podman %s on %s (%s)", self.version, self.data_dir, self.storage_driver)

    def _remove_containers(self) -> None:
        self.call("rm", "-af", "-t", "0")

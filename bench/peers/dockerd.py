"""dockerd (Debian's docker.io 20.10) as a peer, with a containerd of its own.

The harness never uses a system daemon: it starts containerd on a socket in its own run
directory (so dockerd cannot pick up a system containerd at /run/containerd), then dockerd
with its own `--data-root` (on the backing filesystem of the strata driver it mirrors),
`--exec-root`, `--pidfile`, `--host`, an empty `--config-file`, and no iptables, masquerade
or bridge. The client is Debian's `/usr/bin/docker` (the same 20.10 API), with a config
directory of its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time

from . import Peer, PeerFailed

log = logging.getLogger(__name__)

CLIENT = "/usr/bin/docker"  # Debian docker.io's client; /usr/local/bin/docker is a newer one
START_TIMEOUT = 60.0
CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
"""


class Dockerd(Peer):
    name = "dockerd"
    DRIVERS = {"overlay2": "overlay2", "vfs": "vfs", "btrfs": "btrfs"}

    @property
    def socket(self) -> str:
        return os.path.join(self.run_dir, "docker.sock")

    def argv(self, *args: str) -> list[str]:
        return [CLIENT, "--host", f"unix://{self.socket}", *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = os.path.join(self.run_dir, "client")
        return env

    def start(self) -> None:
        binaries = {b: shutil.which(b) for b in ("dockerd", "containerd", "runc")}
        missing = [b for b, path in binaries.items() if path is None]
        if missing or not os.access(CLIENT, os.X_OK):
            raise PeerFailed(f"dockerd: {', '.join(missing) or CLIENT} not found (install docker.io: make deps)")
        text = subprocess.run([binaries["dockerd"], "--version"], capture_output=True, text=True).stdout
        match = re.search(r"version (\d+\.\d+\.\d+)", text)
        version = match.group(1) if match else "unknown"
        containerd_sock = os.path.join(self.run_dir, "containerd.sock")
        config = os.path.join(self.run_dir, "containerd.toml")
        with open(config, "w") as f:
            f.write(CONTAINERD_CONFIG.format(root=os.path.join(self.data_dir, "containerd"),
                                             state=os.path.join(self.run_dir, "containerd"), socket=containerd_sock))
        daemon_json = os.path.join(self.run_dir, "daemon.json")
        with open(daemon_json, "w") as f:
            json.dump({}, f)
        log_file = open(self.log_path, "ab")
        try:
            self.children.append(subprocess.Popen(
                [binaries["containerd"], "--config", config], stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True))
            self._wait_for(containerd_sock, "containerd")
            argv = [
                binaries["dockerd"], "--data-root", os.path.join(self.data_dir, "docker"),
                "--exec-root", os.path.join(self.run_dir, "exec"),
                "--pidfile", os.path.join(self.run_dir, "dockerd.pid"),
                "--host", f"unix://{self.socket}", "--containerd", containerd_sock, "--config-file", daemon_json,
                "--storage-driver", self.storage_driver, "--iptables=false", "--ip-masq=false", "--bridge=none",
                "--exec-opt", "native.cgroupdriver=cgroupfs",
            ]
            if self.registry:
                argv += ["--insecure-registry", self.registry]
            self.children.append(subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True))
        finally:
            log_file.close()
        self._wait_for(self.socket, "dockerd")
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # the socket exists before the API answers
            info = subprocess.run(self.argv("info", "--format", "{{.Driver}}"), capture_output=True, text=True,
                                  env=self.env())
            if info.returncode == 0:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.children):
                raise PeerFailed(f"dockerd did not answer: {info.stderr.strip()}; log: {self.log_tail()}")
            time.sleep(0.2)
        if info.stdout.strip() != self.storage_driver:
            raise PeerFailed(f"dockerd runs storage driver {info.stdout.strip()!r}, not {self.storage_driver!r}")
        self.version = version
        log.info("dockerd %s on %s (%s), socket %s", version, self.data_dir, self.storage_driver, self.socket)

    def _wait_for(self, socket: str, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(socket):
            dead = [p for p in self.children if p.poll() is not None]
            if dead:
                raise PeerFailed(f"{what} exited {dead[0].returncode} while starting: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise PeerFailed(f"{what} did not create {socket} within {START_TIMEOUT:.0f}s: {self.log_tail()}")
            time.sleep(0.05)

    def stop_daemons(self) -> None:
        for proc in reversed(list(self.children)):  # dockerd first, then its containerd
            self.stop_process(proc)


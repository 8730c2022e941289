"""The standalone `strata` CLI's network commands, in a network namespace of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys

from engine.images import testimages
from engine.network import netns
from tests.engine.api.conftest import REPO


def test_network_commands_and_published_ports_of_the_standalone_cli(make_backing, tmp_path) -> None:
    fs = make_backing("ext4")
    root = os.path.join(fs.mountpoint, "root")
    image = testimages.write(str(tmp_path / "busybox.tar"), [testimages.busybox(str(tmp_path / "build"))])
    ns = str(tmp_path / "netns")
    netns.create(ns)

    def strata(*args: str) -> str:
        done = subprocess.run(["nsenter", f"--net={ns}", sys.executable, "-m", "engine.cli", "--root", root, "-s",
                               "vfs", *args], capture_output=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
        assert done.returncode == 0, (args, done.stderr.decode())
        return done.stdout.decode()

    try:
        strata("load", "-i", image)
        strata("network", "create", "--subnet", "10.9.0.0/24", "clinet")
        assert "clinet" in strata("network", "ls").split()
        strata("run", "-d", "--name", "srv", "--network", "clinet", "-p", "127.0.0.1:18090:80", "busybox", "sh", "-c",
               "mkdir /www && echo cli > /www/index.html && exec httpd -f -p 80 -h /www")
        assert strata("port", "srv").strip() == "80/tcp -> 127.0.0.1:18090"
        assert strata("run", "--rm", "--network", "clinet", "busybox", "wget", "-qO-", "http://srv/") == "cli\n"
        strata("rm", "-f", "srv")
        strata("network", "rm", "clinet")
        assert "clinet" not in strata("network", "ls").split()
        gone = subprocess.run(["nsenter", f"--net={ns}", "nft", "list", "table", "ip", "strata"], capture_output=True)
        assert gone.returncode != 0
    finally:
        netns.remove(ns)

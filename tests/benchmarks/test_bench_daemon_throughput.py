"""Daemon throughput: 100 concurrent `docker run --rm --network none busybox true` through
strata's daemon, beside the same 100 through a private dockerd (Debian's docker.io, which
`make test` installs) that this benchmark starts on its own socket and roots.

Both daemons keep their storage on the same kind of private loop-mounted ext4 with
overlay2, run containers through runc, and are driven by the same docker client, so the
difference is the daemon's. A round is one burst: all clients start at once and the
round's time is from the first start to the last exit; every client must succeed. Peak
resident memory is sampled every 10 ms during the bursts, for the daemon process itself
and for its whole process tree (dockerd's containerd and shims, strata's monitors).
Rounds alternate between the daemons. Goal (issue #21): strata <= 0.5x dockerd's wall
time, and strata's peak daemon RSS no more than dockerd's.

Run: PYTHONPATH=$PWD .venv/bin/pytest tests/benchmarks/test_bench_daemon_throughput.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.images import testimages
from graphdrivers.backing import LoopFilesystem
from tests.benchmarks.sidebyside import Contender, measure
from tests.engine.api.conftest import start_daemon
from tests.support import dockerd

CLIENTS = 100
ROUNDS = 5


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _rss(pid: int) -> int:
    """Resident bytes of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return 0


class PeakRss:
    """Samples a daemon's RSS (alone and with its process tree) while `with` runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.daemon, self.tree = pid, 0, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.daemon = max(self.daemon, _rss(self.pid))
            self.tree = max(self.tree, sum(_rss(p) for p in _tree(self.pid)))

    def __enter__(self) -> PeakRss:
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _burst(host: str, docker_config: str) -> None:
    """CLIENTS concurrent `docker run --rm`; all must succeed."""
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": docker_config}
    argv = [dockerd.DOCKER, "run", "--rm", "--network", "none", "busybox", "true"]

    def one(_: int) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, env=env, capture_output=True, timeout=600)

    with ThreadPoolExecutor(CLIENTS) as pool:
        failed = [d.stderr.decode(errors="replace") for d in pool.map(one, range(CLIENTS)) if d.returncode != 0]
    assert not failed, f"{len(failed)} of {CLIENTS} runs failed through {host}: {failed[:3]}"


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, int]]]:
    """name -> (host, daemon pid) for strata's daemon and, when installed, a private dockerd."""
    work = tmp_path_factory.mktemp("bench-throughput")
    image = testimages.write(str(work / "busybox.tar"), [testimages.busybox(str(work / "build"))])
    fs = LoopFilesystem(str(work / "backing"), "ext4", 2 << 30).create()
    strata = peer = None
    try:
        root = os.path.join(fs.mountpoint, "strata")
        os.makedirs(root)
        strata = start_daemon(root, "overlay2", exec_driver=None)
        assert strata.docker("load", "-i", image).returncode == 0
        found = {"strata": (strata.host, strata.proc.pid)}
        dockerd.require()
        peer = dockerd.PrivateDockerd(os.path.join(fs.mountpoint, "dockerd")).start()
        peer.docker("load", "-i", image)
        found["dockerd"] = (peer.host, peer.pid())
        yield found
    finally:
        if strata is not None:
            strata.stop()
        if peer is not None:
            peer.stop()
        fs.destroy()


def test_concurrent_runs(benchmark, daemons: dict[str, tuple[str, int]], tmp_path) -> None:
    peaks = {name: PeakRss(pid) for name, (_, pid) in daemons.items()}

    def contender(name: str) -> Contender:
        host, _ = daemons[name]

        def run() -> None:
            with peaks[name]:
                _burst(host, str(tmp_path / "cfg"))
        return Contender(name, run)

    benchmark.extra_info["command"] = f"{CLIENTS} x concurrent docker run --rm --network none busybox true"
    measure(benchmark, [contender(name) for name in daemons], rounds=ROUNDS, reference="dockerd", goal=0.5)
    for name, peak in peaks.items():
        benchmark.extra_info[f"{name}_peak_rss_mib"] = {"daemon": peak.daemon / 2**20, "tree": peak.tree / 2**20}
        print(f"{name} peak RSS: daemon {peak.daemon / 2**20:.0f} MiB, process tree {peak.tree / 2**20:.0f} MiB")

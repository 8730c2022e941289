"""Peers: the engines people actually run (dockerd, podman), measured beside strata.

A peer is started by the harness on its own sockets and roots (never a system daemon),
with its data root on the backing filesystem of the strata driver it mirrors and the
storage driver of the same name. It is driven through its own CLI, and every step times
one CLI command from its start until it exits (or, for `echo`, until the first byte
arrives). `close()` leaves nothing: no process, mount, socket or directory -- whatever
state a step was interrupted in.

A pairing a peer cannot do raises PeerUnavailable (a warning and an `errors` entry, no
rows of numbers); a peer that cannot start raises PeerFailed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

from graphdrivers import mountutil

log = logging.getLogger(__name__)

PEERS = ("dockerd", "podman")
# sockets, pid files, exec state: short paths (a unix socket path has 108 bytes, podman's
# runroot 50), whatever $TMPDIR is
RUN_BASE = "/run/strata/bench"
COMMAND_TIMEOUT = 300.0
STOP_TIMEOUT = 20.0


class PeerUnavailable(Exception):
    """This peer cannot be paired with this driver here (no such storage driver, no binary)."""


class PeerFailed(Exception):
    """The peer did not start, or one of its commands failed; the message says how."""


def clock() -> float:
    return time.perf_counter()


class Peer:
    """One peer engine on one strata driver's backing filesystem.

    Subclasses say how to start it (`start`), the command prefix of its CLI (`argv`), and
    their extra flags; the steps are the same commands for both peers.
    """

    name = ""
    DRIVERS: dict[str, str] = {}  # strata driver -> the peer's storage driver of the same kind
    CREATE_FLAGS: tuple[str, ...] = ("--network", "none")
    PULL_FLAGS: tuple[str, ...] = ()

    def __init__(self, strata_driver: str, data_dir: str, registry: str | None = None) -> None:
        if strata_driver not in self.DRIVERS:
            raise PeerUnavailable(
                f"{self.name} has no storage driver like strata's {strata_driver} "
                f"(it has {', '.join(sorted(set(self.DRIVERS.values())))})"
            )
        self.strata_driver = strata_driver
        self.storage_driver = self.DRIVERS[strata_driver]
        self.data_dir = data_dir  # on the backing filesystem of `strata_driver`
        self.registry = registry  # host:port of the loopback registry, when the run has one
        os.makedirs(RUN_BASE, exist_ok=True)
        self.run_dir = tempfile.mkdtemp(prefix=f"{self.name}-", dir=RUN_BASE)
        self.version = ""
        self.log_path = os.path.join(self.run_dir, f"{self.name}.log")
        self.children: list[subprocess.Popen[bytes]] = []  # daemons, and the command running now
        os.makedirs(self.data_dir, exist_ok=True)

    @property
    def system(self) -> str:
        """The `system` column: name and version, e.g. `dockerd 20.10.24`."""
        return f"{self.name} {self.version}".strip()

    # -- to be provided by each peer ---------------------------------------------------

    def start(self) -> None:
        raise NotImplementedError

    def argv(self, *args: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def stop_daemons(self) -> None:
        """Stop the daemons this peer started (dockerd: dockerd and its containerd)."""

    # -- commands ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _command(self, args: tuple[str, ...], stdout: int) -> Iterator[subprocess.Popen[bytes]]:
        """One CLI command, tracked so an interrupted step still has it killed."""
        proc = subprocess.Popen(
            self.argv(*args), stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=self.env()
        )
        self.children.append(proc)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            self.children.remove(proc)

    def timed(self, *args: str) -> tuple[float, bytes]:
        """Run a CLI command; (seconds from its start until it exited, its stdout)."""
        with self._command(args, subprocess.PIPE) as proc:
            t0 = clock()
            out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
            t1 = clock()
            if proc.returncode != 0:
                raise PeerFailed(f"{self.name}: `{' '.join(args)}` exited {proc.returncode}: {err.decode().strip()}")
        return t1 - t0, out

    def call(self, *args: str) -> str:
        """An untimed command (setup, cleanup): its stdout."""
        return self.timed(*args)[1].decode().strip()

    def first_byte(self, *args: str, expect: bytes) -> float:
        """Seconds from the command's start until the first byte of its stdout arrives."""
        with self._command(args, subprocess.PIPE) as proc:
            t0 = clock()
            first = proc.stdout.read(1)  # type: ignore[union-attr]
            t1 = clock()
            out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
            if proc.returncode != 0 or first != expect:
                raise PeerFailed(
                    f"{self.name}: `{' '.join(args)}` exited {proc.returncode} after printing {first + out!r}: "
                    f"{err.decode().strip()}"
                )
        return t1 - t0

    # -- the steps -----------------------------------------------------------------------

    def load(self, archive: str) -> float:
        return self.timed("load", "-i", archive)[0]

    def pull(self, reference: str) -> float:
        return self.timed("pull", *self.PULL_FLAGS, reference)[0]

    def rmi(self, image: str) -> None:
        self.call("rmi", "-f", image)

    def create(self, image: str, *cmd: str) -> tuple[float, str]:
        """Seconds `create` took, and the new container's id."""
        seconds, out = self.timed("create", *self.CREATE_FLAGS, image, *cmd)
        return seconds, out.decode().strip().splitlines()[-1]

    def start_attached(self, container: str) -> float:
        """`start -a`: from the start request until the process has exited (successfully)."""
        return self.timed("start", "-a", container)[0]

    def start_first_byte(self, container: str, expect: bytes) -> float:
        return self.first_byte("start", "-a", container, expect=expect)

    def run_rm(self, image: str, *cmd: str) -> float:
        return self.timed("run", "--rm", *self.CREATE_FLAGS, image, *cmd)[0]

    def rm(self, container: str) -> None:
        self.call("rm", "-f", container)

    # -- teardown -------------------------------------------------------------------------

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-1500:].strip()
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Kill what runs, remove containers, stop the daemons, kill any process still
        naming our directories (shims, conmon), unmount and delete everything."""
        for proc in list(self.children):
            if proc.poll() is None:
                proc.kill()
        with contextlib.suppress(Exception):
            if self.version:
                self._remove_containers()
        self.stop_daemons()
        kill_processes_under((self.run_dir, self.data_dir))
        for top in (self.run_dir, self.data_dir):
            if os.path.isdir(top):
                for point in mountutil.mounts_under(top):
                    mountutil.umount_retry(point)
            shutil.rmtree(top, ignore_errors=True)

    def _remove_containers(self) -> None:
        ids = self.call("ps", "-aq").split()
        if ids:
            self.call("rm", "-f", *ids)

    def stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ValueError):
            self.children.remove(proc)


def kill_processes_under(paths: tuple[str, ...]) -> list[int]:
    """SIGKILL every process whose command line names one of `paths` (our own temp dirs:
    only processes a peer started here can name them); their pids."""
    killed = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if pid != os.getpid() and any(path and path in cmdline for path in paths):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    for pid in killed:  # reap our own children; others are reaped by init
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    if killed:
        log.warning("killed %d leftover peer processes: %s", len(killed), killed)
    return killed


def make(name: str, strata_driver: str, data_dir: str, registry: str | None = None) -> Peer:
    """Peer `name` for `strata_driver` (not started), or PeerUnavailable."""
    if name == "dockerd":
        from .dockerd import Dockerd

        return Dockerd(strata_driver, data_dir, registry)
    if name == "podman":
        from .podman import Podman

        return Podman(strata_driver, data_dir, registry)
    raise PeerUnavailable(f"unknown peer {name!r} (known: {', '.join(PEERS)})")

"""The container subcommands of `strata`: argument parsing and the jobs they build."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator

from ..containers import logfile
from ..containers.jobs import logs_selection
from ..engine import Engine
from ..errors import EngineError
from ..execdrivers.base import MonitorInfo, wait_for_exit
from ..job import Job
from .commands import command, job_of

COMMANDS = ("create", "run", "start", "wait", "logs", "stop", "kill", "rm", "ps", "diff", "commit", "export", "exec",
            "pause", "unpause", "restart", "rename", "update", "top", "stats", "cp", "events")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name in ("create", "run", "start", "wait", "stop", "kill", "rm", "pause", "unpause", "restart", "update",
                 "stats", "logs", "diff", "ps", "commit", "rename", "top", "events", "exec"):
        command(sub, name)
    volume = sub.add_parser("volume", help="named volumes").add_subparsers(dest="volume_command", required=True,
                                                                            metavar="COMMAND")
    for name in ("create", "ls", "inspect", "rm"):
        command(volume, name, job=f"volume_{name}")
    command(sub, "cp", helps={"src": "CONTAINER:PATH or a local path", "dest": "CONTAINER:PATH or a local path"})
    command(sub, "export").add_argument("-o", "--output", default=None, help="tar file (default: stdout)")


def job_for(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None] | None:
    """The job of a container command (and the file its stdout goes to), None for others."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    cmd = ns.command
    if cmd == "inspect" and _all_containers(engine, ns.image):
        return job_of(engine, ns, name="container_inspect", extra={"format": ns.format}, stdout=out,
                      stderr=err), None
    if cmd == "volume":
        return job_of(engine, ns, stdout=out, stderr=err), None
    if cmd not in COMMANDS:
        return None
    if (cmd == "run" and ns.detach) or cmd == "start":
        _refuse_detached_if_mounts_end_with_us(engine)
    if cmd == "run" and ns.detach and (ns.interactive or ns.tty):
        raise EngineError("-i and -t with -d need a long-lived engine that holds the container's stdin and "
                          "terminal: use `strata daemon` and the docker CLI, or run in the foreground")
    stdin = sys.stdin.buffer if cmd in ("run", "exec") and ns.interactive else None
    return job_of(engine, ns, stdin=stdin, stdout=out, stderr=err), getattr(ns, "output", None)


def _refuse_detached_if_mounts_end_with_us(engine: Engine) -> None:
    """A container this command leaves running keeps its rootfs mounted after the command
    ends (Containers.close); a driver that cannot leave a mount behind is refused up front."""
    reason = engine.driver.disown_unsupported()
    if reason is not None:
        raise EngineError(f"a detached container would lose its filesystem when this command exits: {reason}")


def _all_containers(engine: Engine, refs: list[str]) -> bool:
    """`inspect` names containers first, as Docker's does; images otherwise."""
    return engine.job("container_inspect", *refs).run() == 0


def follow_logs(open_engine: Callable[[], Engine], ns: argparse.Namespace) -> int:
    """`logs -f` without holding the engine root while it follows.

    One engine process owns a root at a time; a follow that kept it would lock out every
    other command (`stop` among them) for as long as the container runs. So the record is
    read with the engine open, then the log files are followed and the container's
    monitor is watched through a pidfd, with no engine.
    """
    with open_engine() as engine:
        job = engine.job("container_inspect", ns.container, stderr=sys.stderr.buffer)
        if job.run() != 0:
            return job.status or 1
        data = job.json()[0]
        sel = logs_selection(vars(ns))
    monitor = data["Monitor"] if data["State"]["Running"] and data["Monitor"] else None

    def emit(stream: str, line: bytes) -> None:
        out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        out.write(line)
        out.flush()

    logfile.copy(data["LogPath"], emit, sel,
                 ended=None if monitor is None else lambda t: wait_for_exit(MonitorInfo.from_json(monitor), t),
                 written=lambda: logfile.wait_written(monitor))
    return 0


PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGWINCH)  # the job resizes the container's terminal on SIGWINCH
FORCE_AFTER = 3  # interrupts: the third ^C kills a container that ignores SIGINT


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """Our terminal in raw mode while a container's terminal is attached to it (as docker -it):
    keys go to the container as they are typed, ^C included; restored on the way out."""
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def proxy_signals(job: Job, only: tuple[int, ...] = PROXIED) -> Iterator[None]:
    """While a foreground `run` job runs, send the signals the CLI gets to its container.

    As `docker run` does (sig-proxy): ^C reaches the container's process, which decides.
    A container's pid 1 ignores signals it has no handler for, and while `run` holds the
    engine root no other `strata` can stop it, so the third ^C sends SIGKILL. The handler
    only queues the signal; the job's wait loop delivers it (no engine call re-entered
    from a signal handler).
    """
    pending: list[int] = []
    interrupts = 0

    def forward(sig: int, _frame: object) -> None:
        nonlocal interrupts
        interrupts += sig == signal.SIGINT
        pending.append(signal.SIGKILL if interrupts >= FORCE_AFTER else sig)

    job.pending_signals = pending  # type: ignore[attr-defined]
    previous = {sig: signal.signal(sig, forward) for sig in only}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

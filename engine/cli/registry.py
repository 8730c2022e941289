"""`strata daemon`, `pull`, `push` and `search`: argument parsing into jobs."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from ..engine import Engine
from ..job import Job
from .commands import command, job_of

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = command(sub, "daemon", job="serveapi", arguments_from=("host",))
    c.add_argument("-H", "--host", action="append", default=[], metavar="HOST",
                   help="unix:///path or tcp://ADDRESS:PORT (default: unix:///run/strata/strata.sock)")
    c.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="what the daemon logs to stderr")
    for name in ("pull", "push", "search"):
        _password_stdin(command(sub, name))


def _password_stdin(c: argparse.ArgumentParser) -> None:
    c.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")


def job_for(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None] | None:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if ns.command == "daemon":
        _stop_on_signals(engine)
        return job_of(engine, ns, stdout=out, stderr=err), None
    if ns.command in ("pull", "push", "search"):
        password = sys.stdin.readline().rstrip("\n") if ns.username and ns.password_stdin else ""
        return job_of(engine, ns, extra={"password": password}, stdout=out, stderr=err), None
    return None


def configure_logging(level: str) -> None:
    """The daemon's log on stderr, as dockerd's --log-level sets it."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _stop_on_signals(engine: Engine) -> None:
    """SIGTERM and SIGINT end `serveapi` cleanly: containers stopped, mounts released."""

    def handler(signum: int, _frame: Any) -> None:
        engine.api.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

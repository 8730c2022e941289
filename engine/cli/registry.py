"""`strata daemon`, `pull`, `push` and `search`: argument parsing into jobs."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ..engine import Engine
from ..job import Job


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("daemon", help="serve the Docker Engine API (the serveapi job) until SIGTERM")
    c.add_argument("-H", "--host", action="append", default=[], metavar="HOST",
                   help="unix:///path or tcp://ADDRESS:PORT (default: unix:///run/strata/strata.sock)")
    c.add_argument("-G", "--group", default=None, help="group that may use the unix socket (it is 0660 root:GROUP)")
    for name, help_text in (("pull", "download an image from a registry"),
                            ("push", "upload an image to the registry its name starts with")):
        c = sub.add_parser(name, help=help_text)
        _auth_args(c)
        c.add_argument("image", metavar="NAME[:TAG]")
    c = sub.add_parser("search", help="repositories of a registry whose names contain TERM")
    _auth_args(c)
    c.add_argument("--limit", type=int, default=25)
    c.add_argument("term", metavar="REGISTRY/TERM")


def _auth_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("-u", "--username", default=None, help="registry user")
    c.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
    c.add_argument("--insecure", action="store_true", help="allow plain HTTP to a non-loopback registry")


def _auth_env(ns: argparse.Namespace) -> dict[str, str]:
    env = {"insecure": "1" if ns.insecure else ""}
    if ns.username:
        env["username"] = ns.username
        env["password"] = sys.stdin.readline().rstrip("\n") if ns.password_stdin else ""
    return env


def job_for(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None] | None:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if ns.command == "daemon":
        _stop_on_signals(engine)
        return engine.job("serveapi", *ns.host, env={"group": ns.group or ""}, stdout=out, stderr=err), None
    if ns.command in ("pull", "push"):
        return engine.job(ns.command, ns.image, env=_auth_env(ns), stdout=out, stderr=err), None
    if ns.command == "search":
        env = {**_auth_env(ns), "limit": str(ns.limit)}
        return engine.job("search", ns.term, env=env, stdout=out, stderr=err), None
    return None


def _stop_on_signals(engine: Engine) -> None:
    """SIGTERM and SIGINT end `serveapi` cleanly: containers stopped, mounts released."""

    def handler(signum: int, _frame: Any) -> None:
        if engine.api is not None:
            engine.api.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

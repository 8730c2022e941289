"""`strata network ls|create|rm|inspect|connect|disconnect|prune` and `strata port`."""

from __future__ import annotations

import argparse
import sys

from ..engine import Engine
from ..job import Job
from .commands import command, job_of

SUBCOMMANDS = ("ls", "create", "rm", "inspect", "connect", "disconnect", "prune")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    net = sub.add_parser("network", help="manage networks")
    inner = net.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        command(inner, name, job=f"network_{name}")
    command(sub, "port")


def job_for(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None] | None:
    if ns.command not in ("network", "port"):
        return None
    return job_of(engine, ns, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer), None

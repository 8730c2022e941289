"""`strata network ls|create|rm|inspect|connect|disconnect|prune` and `strata port`."""

from __future__ import annotations

import argparse
import sys

from ..engine import Engine
from ..job import Job
from .commands import command, job_of

# subcommand -> (job, positionals: (dest, nargs, metavar))
SUBCOMMANDS = {
    "ls": ("network_ls", ()),
    "create": ("network_create", (("name", None, "NAME"),)),
    "rm": ("network_rm", (("networks", "+", "NETWORK"),)),
    "inspect": ("network_inspect", (("networks", "+", "NETWORK"),)),
    "connect": ("network_connect", (("network", None, "NETWORK"), ("container", None, "CONTAINER"))),
    "disconnect": ("network_disconnect", (("network", None, "NETWORK"), ("container", None, "CONTAINER"))),
    "prune": ("network_prune", ()),
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    net = sub.add_parser("network", help="manage networks")
    inner = net.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    for name, (job, positionals) in SUBCOMMANDS.items():
        c = command(inner, name, job=job, positionals=[dest for dest, _, _ in positionals])
        for dest, nargs, metavar in positionals:
            c.add_argument(dest, nargs=nargs, metavar=metavar)
    c = command(sub, "port", positionals=("container", "port"))
    c.add_argument("container", metavar="CONTAINER")
    c.add_argument("port", nargs="?", metavar="PORT[/PROTO]")


def job_for(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None] | None:
    if ns.command not in ("network", "port"):
        return None
    return job_of(engine, ns, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer), None

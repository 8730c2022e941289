"""The image and system subcommands of `strata`: load, save, import, images, tag, rmi,
inspect, history, testimage, info, df (also as `system df`), version."""

from __future__ import annotations

import argparse
import sys

from ..engine import Engine
from ..errors import EngineError
from ..job import Job
from .commands import command, job_of


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = command(sub, "load", arguments_from=("input",))
    c.add_argument("-i", "--input", default="-", help="archive file or OCI layout directory (default: stdin)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    command(sub, "save").add_argument("-o", "--output", default=None, help="archive file (default: stdout)")
    command(sub, "import", helps={"file": "tar file (plain, gzip or zstd), or - for stdin"})
    for name in ("images", "tag", "rmi", "inspect", "history", "info", "df", "version", "testimage"):
        command(sub, name)
    command(sub, "system", job="df").add_argument("subcommand", choices=("df",), help="df: disk usage")


def job_for(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None]:
    """The job of an image or system command, and the file its stdout goes to (None: our stdout)."""
    if ns.command == "save" and ns.output is None and sys.stdout.isatty():
        raise EngineError("refusing to write an archive to a terminal; use -o FILE or redirect stdout")
    stdin = sys.stdin.buffer if ns.command in ("load", "import") else None
    job = job_of(engine, ns, stdin=stdin, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    return job, getattr(ns, "output", None)

"""Subcommands made from job declarations: each one's options come from its JobSpec.

A subcommand names its job; its positionals are the job's declared usage line
(`jobspec.positionals`), its option flags, types, defaults and help the job's declared
options, and the values go back to the job in order and under the declared names. A flag
the job does not declare can only be added by hand (`CLI_ONLY` lists those), and a test
holds the two together.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import IO, Any

from .. import builtins
from ..engine import Engine
from ..job import Job
from ..jobspec import REST, JobSpec

SPECS = builtins.specs()

# Flags of the CLI that are not job options: where the job's input or output goes, how
# the CLI shows progress or reads a secret, how the daemon logs.
CLI_ONLY = {
    "load": {"input", "quiet"},
    "save": {"output"},
    "export": {"output"},
    "pull": {"password_stdin"},
    "push": {"password_stdin"},
    "search": {"password_stdin"},
    "daemon": {"host", "log_level"},
}
# Declared options the CLI sets otherwise than with a flag of their own.
NOT_FLAGS = {"password": "read from stdin with --password-stdin",
             "stdin_once": "what `run -i` without -d sets, as docker run does",
             "one_shot": "the API's one-shot stats reading",
             "console_size": "the API's ConsoleSize; `run -t` here sizes the terminal as the caller's"}


def command(sub: argparse._SubParsersAction, name: str, *, job: str | None = None,
            arguments_from: Sequence[str] | None = None, helps: Mapping[str, str] | None = None
            ) -> argparse.ArgumentParser:
    """The subcommand `name` of the job `job` (default: the same name) with the job's options.

    Its positionals are the job's usage line; `arguments_from` instead names CLI flags whose
    values are the job's arguments (`load -i FILE`, `daemon -H HOST`, as docker's are), and
    `helps` gives a positional its help text.
    """
    spec = SPECS[job or name]
    parser = sub.add_parser(name, help=spec.help)
    for dest, option in spec.options.items():
        if not option.flags:
            continue
        if option.type is bool:
            parser.add_argument(*option.flags, dest=dest, action="store_true", help=option.help)
        elif option.type is list:
            parser.add_argument(*option.flags, dest=dest, action="append", default=[], help=option.help)
        else:
            parser.add_argument(*option.flags, dest=dest, type=option.type, default=option.default,
                                choices=option.choices, help=option.help)
    if arguments_from is None:
        for arg in spec.positionals:
            if arg.dest in spec.options:
                raise ValueError(f"job {spec.name}: positional {arg.dest!r} is also an option's name")
            parser.add_argument(arg.dest, metavar=arg.metavar, help=(helps or {}).get(arg.dest),
                                nargs=argparse.REMAINDER if arg.nargs == REST else arg.nargs)
        arguments_from = [arg.dest for arg in spec.positionals]
    parser.set_defaults(job=spec.name, positionals=tuple(arguments_from))
    return parser


def options_of(ns: argparse.Namespace, spec: JobSpec) -> dict[str, Any]:
    """The declared options the command line set, by their declared names."""
    return {dest: getattr(ns, dest) for dest, option in spec.options.items() if option.flags}


def arguments_of(ns: argparse.Namespace) -> list[str]:
    args: list[str] = []
    for dest in ns.positionals:
        value = getattr(ns, dest)
        if isinstance(value, list):
            args += value
        elif value is not None:
            args.append(value)
    return args


def job_of(engine: Engine, ns: argparse.Namespace, *, name: str | None = None, extra: dict[str, Any] | None = None,
           stdin: IO[bytes] | None = None, stdout: IO[bytes], stderr: IO[bytes]) -> Job:
    """The job of a parsed command line (`name` overrides the subcommand's job)."""
    spec = SPECS[name or ns.job]
    options = options_of(ns, spec) if spec.name == ns.job else {}
    return engine.job(spec.name, *arguments_of(ns), options={**options, **(extra or {})}, stdin=stdin,
                      stdout=stdout, stderr=stderr)

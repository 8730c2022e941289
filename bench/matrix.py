"""The matrix of a run: which cells (host x workload x driver) to measure, with which options.

`bench run --matrix FILE.toml` reads the same options the command line takes (their long
names, `-` or `_`), so one parser validates both and a file cannot mean something the
command line cannot; `drivers`, `workloads` and `hosts` are lists (the dimensions). An
option given in the file and on the command line is refused, as is any key that names no
option. The command line alone is the one-host matrix of its drivers and its workload.

    drivers = ["vfs", "overlay2"]
    workloads = ["busybox", "small-files"]
    hosts = ["all"]                 # or host names / IPs of the cluster's workers
    scenario = ["layer-create", "rootfs"]
    repeat = "auto"
    quick = true
    storage_opt = { "aufs.fuse_passthrough" = "false" }
"""

from __future__ import annotations

import argparse
import itertools
import logging
import tomllib
from dataclasses import dataclass

from .cells import IMAGE_PREFIX, Cell
from .config import RunConfig
from .workloads import WORKLOADS

log = logging.getLogger(__name__)

ALL_HOSTS = "all"
# matrix keys that are dimensions (lists), and the command-line option each stands for
DIMENSION_KEYS = {"drivers": "driver", "driver": "driver", "workloads": "workload", "workload": "workload"}
HOST_KEYS = ("hosts", "host")
NOT_IN_FILE = ("matrix",)


class MatrixError(Exception):
    """A matrix file that cannot be read, or that names something `bench run` does not take."""


def _actions(run_parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in run_parser._actions for s in a.option_strings if s.startswith("--")}


def _as_list(path: str, key: str, value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise MatrixError(f"{path}: {key} wants a name or a list of names, got {value!r}")
    return list(items)


def _option_argv(path: str, key: str, value: object, action: argparse.Action) -> list[str]:
    """One file entry as the command-line words that say the same."""
    flag = max(action.option_strings, key=len)
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise MatrixError(f"{path}: {key} wants true or false, got {value!r}")
        return [flag] if value else []
    if isinstance(value, dict):
        if not isinstance(action, argparse._AppendAction):
            raise MatrixError(f"{path}: {key} takes a value, not a table")
        return [w for k, v in value.items() for w in (flag, f"{k}={v}")]
    if isinstance(value, list):
        if isinstance(action, argparse._AppendAction):
            return [w for v in value for w in (flag, str(v))]
        return [flag, ",".join(map(str, value))]  # comma-separated options (--scenario, --depths)
    if isinstance(value, bool):
        raise MatrixError(f"{path}: {key} is not a flag (give a value)")
    return [flag, str(value)]


@dataclass(frozen=True)
class FileMatrix:
    """What a matrix file said: its options as command-line words, and its dimensions."""

    argv: list[str]
    drivers: list[str]
    workloads: list[str]
    hosts: list[str]


def read(path: str, run_parser: argparse.ArgumentParser, command_line: list[str]) -> FileMatrix:
    """Read FILE.toml; refuse unknown keys and options also given on `command_line`."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise MatrixError(f"--matrix {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"--matrix {path}: not TOML: {exc}") from None
    actions = _actions(run_parser)
    every = run_parser._option_string_actions  # short names too (-o)
    given = {every[w.split("=", 1)[0]].dest for w in command_line if w.split("=", 1)[0] in every}
    argv: list[str] = []
    drivers: list[str] = []
    workloads: list[str] = []
    hosts: list[str] = []
    for key, value in data.items():
        name = key.replace("_", "-")
        if key in DIMENSION_KEYS or key in HOST_KEYS:
            dest = "host" if key in HOST_KEYS else DIMENSION_KEYS[key]
            if dest in given:
                raise MatrixError(f"{key} is given in {path} and on the command line: give it in one place")
            names = _as_list(path, key, value)
            {"driver": drivers, "workload": workloads, "host": hosts}[dest].extend(names)
            continue
        action = actions.get(f"--{name}")
        if action is None or name in NOT_IN_FILE:
            raise MatrixError(f"{path}: {key}: no such `bench run` option")
        if action.dest in given:
            raise MatrixError(f"{key} is given in {path} and on the command line: give it in one place")
        argv += _option_argv(path, key, value, action)
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad:
        raise MatrixError(f"{path}: unknown workload {', '.join(bad)} (choose from {', '.join(WORKLOADS)})")
    return FileMatrix(argv, drivers, workloads, hosts)


@dataclass(frozen=True)
class Matrix:
    """The run options and the dimensions a run's cells are made of."""

    config: RunConfig
    drivers: list[str]
    workloads: list[str]
    hosts: list[str]  # [ALL_HOSTS], or names the cluster's hosts are matched against

    @classmethod
    def of(cls, config: RunConfig, drivers: list[str], workloads: list[str], hosts: list[str]) -> Matrix:
        if config.image is not None:
            if workloads:
                raise MatrixError("give workloads or an --image, not both")
            workloads = [IMAGE_PREFIX + config.image]
        return cls(config, drivers, workloads or [config.workload], hosts or [ALL_HOSTS])

    def cells(self, hosts: list[str]) -> list[Cell]:
        """Every cell on the given (resolved) hosts: host x workload x driver."""
        return [
            Cell.of(host=h, workload=w, driver=d) for h, w, d in itertools.product(hosts, self.workloads, self.drivers)
        ]

    def facts(self) -> dict[str, object]:
        return {"drivers": self.drivers, "workloads": self.workloads, "hosts": self.hosts}

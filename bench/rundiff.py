"""What besides the code differs between two runs, and which differences forbid comparing.

A ratio between two runs means "the code got slower" only when everything else was the
same. Settings that change what is measured (drivers, scenarios, depths, cache, options,
repetitions) are listed so a reader can judge; a different workload or a different
machine measures something else entirely, so `bench compare` refuses those unless told
otherwise (`--allow-different`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# (section, key, blocking): run.json fields compared; blocking ones make compare refuse
CHECKS: tuple[tuple[str, str, bool], ...] = (
    ("config", "workload", True),
    ("config", "image", True),
    ("config", "depth", True),
    ("machine", "cpu_model", True),
    ("machine", "cores", True),
    ("machine", "memory_bytes", True),
    ("machine", "arch", True),
    ("machine", "hostname", False),
    ("machine", "kernel", False),
    ("machine", "os", False),
    ("config", "drivers", False),
    ("config", "scenarios", False),
    ("config", "depths", False),
    ("config", "cache", False),
    ("config", "execdrivers", False),
    ("config", "storage_opts", False),
    ("config", "backing", False),
    ("config", "quick", False),
    ("config", "repeat", False),
    ("config", "warmup", False),
    ("config", "adaptive", False),
    ("config", "target_ci", False),
    ("config", "max_repeat", False),
    ("config", "max_time", False),
)


class IncomparableRuns(Exception):
    """The two runs measured different things (workload) or on different machines."""


@dataclass(frozen=True)
class Difference:
    what: str
    base: object
    new: object
    blocking: bool = False

    def __str__(self) -> str:
        return f"{self.what}: {self.base!r} -> {self.new!r}"


def _normalized(value: object) -> object:
    """JSON gives lists where the run had tuples; compare the values, not the containers."""
    return list(value) if isinstance(value, tuple) else value


def _backing_fs(run: dict) -> dict[str, object]:
    return {name: (d.get("backing") or {}).get("fstype") for name, d in sorted(run.get("drivers", {}).items())}


def differences(base: dict, new: dict) -> list[Difference]:
    """Every difference between two run.json records that is not the code itself."""
    out = []
    for section, key, blocking in CHECKS:
        a = _normalized(base.get(section, {}).get(key))
        b = _normalized(new.get(section, {}).get(key))
        if a != b:
            out.append(Difference(f"{section}.{key}", a, b, blocking))
    measured_a, measured_b = sorted(base.get("drivers", {})), sorted(new.get("drivers", {}))
    if measured_a != measured_b:
        out.append(Difference("drivers measured", measured_a, measured_b))
    fs_a, fs_b = _backing_fs(base), _backing_fs(new)
    for name in sorted(set(fs_a) & set(fs_b)):
        if fs_a[name] != fs_b[name]:
            out.append(Difference(f"backing filesystem of {name}", fs_a[name], fs_b[name]))
    packages_a, packages_b = base.get("packages", {}), new.get("packages", {})
    for name in sorted(set(packages_a) & set(packages_b)):
        if packages_a[name] != packages_b[name]:
            out.append(Difference(f"package {name}", packages_a[name], packages_b[name]))
    return out


def check_comparable(found: list[Difference], allow_different: bool) -> None:
    """Raise IncomparableRuns when a blocking difference is present and not allowed."""
    blocking = [d for d in found if d.blocking]
    if blocking and not allow_different:
        raise IncomparableRuns(
            "the runs measured a different workload or ran on a different machine ("
            + "; ".join(map(str, blocking))
            + "); pass --allow-different to compare anyway"
        )

"""Execution drivers: how a container's process is started in its rootfs.

`oci` runs an OCI bundle with runc or crun (option `exec.runtime`); `native` sets up the
namespaces and pivot_root in the engine itself. Both take the same `ProcessSpec` and give
the same `Handle`, so the engine and the tests treat them alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ExecError, RuntimeNotSupported
from .base import ExecDriver, ExitStatus, Handle, MonitorInfo, ProcessSpec
from .native import NativeDriver
from .oci import OciDriver

DRIVERS: dict[str, type[ExecDriver]] = {"oci": OciDriver, "native": NativeDriver}
DEFAULT = "oci"


def get_execdriver(name: str | None, root: str, options: Mapping[str, str] | None = None) -> ExecDriver:
    """The execdriver `name` (default oci), keeping its state under `root`."""
    name = name or DEFAULT
    cls = DRIVERS.get(name)
    if cls is None:
        raise ExecError(f"unknown execdriver {name!r} (known: {', '.join(DRIVERS)})")
    return cls(root, options)


__all__ = [
    "DRIVERS",
    "ExecDriver",
    "ExecError",
    "ExitStatus",
    "Handle",
    "MonitorInfo",
    "ProcessSpec",
    "RuntimeNotSupported",
    "get_execdriver",
]

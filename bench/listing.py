"""`bench list`: every registered driver, whether it can run here, its backend, why not.

Each driver is actually built, on a small loop filesystem of the kind it registered for,
because "can it run" depends on the kernel, tools and filesystem, not on imports.
"""

from __future__ import annotations

import tempfile

from rich.console import Console
from rich.table import Table

import graphdrivers

from .sandbox import Sandbox, backend_of

PROBE_SIZE = 512 << 20


def probe(name: str) -> dict[str, str]:
    reg = graphdrivers.registration(name)
    with tempfile.TemporaryDirectory(prefix="strata-bench-list-") as scratch:
        sandbox = Sandbox(name, scratch, "loop", "list", loop_size=PROBE_SIZE)
        try:
            driver = sandbox.open()
            status = driver.status()
            return {
                "driver": name,
                "runs": "yes",
                "backend": backend_of(status, name),
                "backing_fs": reg.backing_fs,
                "why": "",
            }
        except Exception as exc:
            return {
                "driver": name,
                "runs": "no",
                "backend": "-",
                "backing_fs": reg.backing_fs,
                "why": f"{type(exc).__name__}: {exc}",
            }
        finally:
            sandbox.close()


def list_drivers() -> int:
    table = Table(title="registered graphdrivers")
    for col in ("driver", "priority", "runs here", "backend", "backing fs", "why not"):
        table.add_column(col)
    for name in graphdrivers.registered():
        info = probe(name)
        table.add_row(
            name,
            str(graphdrivers.registration(name).priority),
            info["runs"],
            info["backend"],
            info["backing_fs"],
            info["why"],
        )
    Console(width=160).print(table)
    return 0

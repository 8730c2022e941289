"""Facts about the machine that `info`, the API and the bench's run.json report: results
depend on them, so every place that records results names them the same way."""

from __future__ import annotations

import contextlib
import os
import platform


def os_name() -> str:
    """The distribution's PRETTY_NAME, else the kernel's name."""
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def facts() -> dict[str, object]:
    """The machine rows of docker info."""
    return {"KernelVersion": os.uname().release, "OperatingSystem": os_name(), "NCPU": os.cpu_count() or 1,
            "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}

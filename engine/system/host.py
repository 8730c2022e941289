"""Facts about the machine that `info`, the API and the bench's run.json report: results
depend on them, so every place that records results names them the same way."""

from __future__ import annotations

import contextlib
import os
import platform

from ..errors import UsageError

# The PATH a container gets when its image sets none (Docker's default).
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # uname's machine names as Go (and image configs) spell them


def arch() -> str:
    """This machine's architecture as image configs and platforms name it (amd64, arm64)."""
    machine = platform.machine()
    return _GO_ARCH.get(machine, machine)



def parse_platform(text: str) -> tuple[str, str, str]:
    """`OS[/ARCH[/VARIANT]]` (Docker's --platform) as (os, arch, variant); "" is this machine's,
    a missing ARCH too. Only linux images run here, so another OS is refused."""
    parts = (text or "linux").lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise UsageError(f"invalid platform {text!r}: OS[/ARCH[/VARIANT]], like linux/amd64")
    os_, arch_, variant = (*parts, "", "")[:3]
    if os_ != "linux":
        raise UsageError(f"invalid platform {text!r}: operating system {os_!r} is not supported (linux)")
    return os_, arch_ or arch(), variant


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

"""The union-mount interface the aufs driver is written against, and the choice of one.

Like devmapper's thin pool (devmapper/pool.py), the driver does not care who makes the
union: the kernel's aufs (kernel_backend.py) or strata's FUSE union filesystem
(fuse_backend.py). Each answers this protocol, and `choose` picks one: the one asked for
with `aufs.backend`, else kernel aufs when the kernel has it, else FUSE. The FUSE union
has two servers (`aufs.fuse_server`): `direct`, which speaks the kernel protocol itself
and can pass file data through, and `pyfuse3` (libfuse 3), which always serves file
data itself; an option the chosen backend cannot honour is refused, not ignored.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Protocol

from ..errors import DriverNotSupported, InvalidOption

BACKENDS = ("kernel", "fuse")
FUSE_SERVERS = ("direct", "pyfuse3")


class UnionBackend(Protocol):
    """Mounts the union of a layer's branches (its own, writable, first)."""

    name: str  # "kernel" or "fuse", as metadata() reports it
    max_branches: int | None  # how many branches one union can stack; None: no limit
    serves_lazy: bool  # can branches be lazy layers (files fetched on first read)?

    def mount(self, mountpoint: str, branches: list[str], mount_label: str, lazy: dict[int, str] | None = None) -> None:
        """Mount the union of `branches` (writable first) at `mountpoint`; `lazy` maps the
        index of each lazy branch to its layer's state directory."""

    def unmount(self, mountpoint: str) -> None:
        """Undo `mount`."""

    def forget(self, mountpoint: str) -> None:
        """Stop tracking the mount without ending it: it outlives this backend (whoever later
        unmounts the mount point ends it; a FUSE process exits when its mount goes)."""

    def describe(self, scratch: str) -> str:
        """What status() shows as the backend; `scratch` is a directory it may use to
        find out what the kernel actually does."""

    def close(self) -> None:
        """Unmount what is still mounted and stop helpers; mounts are not made any more."""


def choose(wanted: str | None, *, passthrough: bool, server: str, given: frozenset[str],
           lazy_timeout: float, lazy_prefetch: bool) -> UnionBackend:
    """The backend asked for, else kernel aufs when the kernel has it, else FUSE.

    `given` are the option keys the user set: passthrough is on by default, but only the
    direct server can do it, so it is refused for pyfuse3 only when asked for."""
    from . import kernel_backend
    from .fuse_backend import FuseBackend

    has_aufs = kernel_backend.available()
    chosen = wanted or ("kernel" if has_aufs else "fuse")
    if chosen == "kernel":
        for key in ("aufs.fuse_server", "aufs.fuse_passthrough"):
            if key in given:
                raise InvalidOption(f"{key} applies to the FUSE backend, not to kernel aufs")
        if not has_aufs:
            raise DriverNotSupported("aufs", "the kernel has no aufs (not in /proc/filesystems); use aufs.backend=fuse")
        return kernel_backend.KernelBackend()
    if not os.path.exists("/dev/fuse"):
        raise DriverNotSupported("aufs", "the FUSE backend needs /dev/fuse (modprobe fuse)")
    if server == "pyfuse3":
        if passthrough and "aufs.fuse_passthrough" in given:
            raise InvalidOption("aufs.fuse_passthrough=true needs aufs.fuse_server=direct (pyfuse3 has no passthrough)")
        if importlib.util.find_spec("pyfuse3") is None:
            raise DriverNotSupported("aufs", "aufs.fuse_server=pyfuse3 needs the pyfuse3 package (pip install pyfuse3)")
        passthrough = False
    return FuseBackend(passthrough=passthrough, server=server, lazy_timeout=lazy_timeout, lazy_prefetch=lazy_prefetch)

"""aufs: union mounts of layer branches, by the kernel's aufs or strata's FUSE union filesystem.

The driver class loads only when the driver is built.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..driver import Driver
from ..registry import register


def _factory(home: str, options: Mapping[str, str]) -> Driver:
    from .driver import AufsDriver

    return AufsDriver(home, options)


# Picked by default only over kernel aufs; the FUSE union when named or found as prior storage.
register("aufs", _factory, priority=30, backing_fs="ext4", auto_options={"aufs.backend": "kernel"})

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


register("aufs", _factory, priority=10, backing_fs="ext4")

"""btrfs graphdriver: layers as subvolumes and snapshots (see driver.py).

Registering costs nothing: btrfsutil is imported only when the driver is built.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..driver import Driver
from ..registry import register


def _factory(home: str, options: Mapping[str, str]) -> Driver:
    from .driver import create

    return create(home, options)


register("btrfs", _factory, priority=10, backing_fs="btrfs")

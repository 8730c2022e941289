"""overlay2 graphdriver: kernel overlayfs with Docker's layout (see driver.py).

The kernel reference point: what a union mount costs when the kernel does it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..driver import Driver
from ..registry import register


def _factory(home: str, options: Mapping[str, str]) -> Driver:
    from .driver import create

    return create(home, options)


register("overlay2", _factory, priority=20, backing_fs="ext4")

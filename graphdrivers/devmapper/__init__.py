"""devmapper: block-level copy-on-write thin devices (dm-thin, or a reflink thin pool)."""

from __future__ import annotations

from collections.abc import Mapping

from ..driver import Driver
from ..registry import register


def _factory(home: str, options: Mapping[str, str]) -> Driver:
    from .driver import DevmapperDriver

    return DevmapperDriver(home, options)


# Picked by default only over dm-thin; the reflink pool when named or found as prior storage.
register("devmapper", _factory, priority=40, backing_fs="xfs", auto_options={"dm.backend": "dmthin"})

"""Reading one aufs branch directory: its opaque marker, its whiteouts and its entries.

The names themselves (`.wh.<name>`, `.wh..wh..opq`, aufs' `.wh..wh.*` bookkeeping) are
defined once in `graphdrivers.whiteouts`; this is the byte-name reader the FUSE union and
the driver's native diff share, on the hot path of every union lookup.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..whiteouts import META_PREFIX_B, OPAQUE_B, PREFIX_B


class BranchDir(NamedTuple):
    """One branch's directory as aufs reads it."""

    opaque: bool  # it holds .wh..wh..opq: lower branches add nothing here
    whiteouts: list[bytes]  # the names its .wh.<name> entries hide
    entries: list[os.DirEntry[bytes]]  # everything else but aufs' bookkeeping


def read_dir(path: bytes) -> BranchDir:
    opaque = False
    whiteouts: list[bytes] = []
    entries: list[os.DirEntry[bytes]] = []
    with os.scandir(path) as it:
        for de in it:
            name = de.name
            if name[:4] != PREFIX_B:
                entries.append(de)
            elif name == OPAQUE_B:
                opaque = True
            elif name[:8] != META_PREFIX_B:
                whiteouts.append(name[4:])
    return BranchDir(opaque, whiteouts, entries)

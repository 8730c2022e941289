"""aufs' on-disk names: `.wh.<name>` hides a lower name, `.wh..wh..opq` makes a directory
opaque, and any other `.wh..wh.*` name is aufs' own bookkeeping that must never show up
in a union view or a layer diff. Shared by the FUSE filesystem and the driver's diff code.
"""

from __future__ import annotations

import os
from typing import NamedTuple

PREFIX = ".wh."
META_PREFIX = ".wh..wh."
OPAQUE = ".wh..wh..opq"

PREFIX_B = PREFIX.encode()
META_PREFIX_B = META_PREFIX.encode()
OPAQUE_B = OPAQUE.encode()

# Whiteouts and opaque markers are empty regular files; 0600 root:root is what Docker's
# overlay whiteout converter puts in layer tars, so both drivers export the same entries.
MARKER_MODE = 0o600


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

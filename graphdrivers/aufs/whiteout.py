"""aufs' on-disk names: `.wh.<name>` hides a lower name, `.wh..wh..opq` makes a directory
opaque, and any other `.wh..wh.*` name is aufs' own bookkeeping that must never show up
in a union view or a layer diff. Shared by the FUSE filesystem and the driver's diff code.
"""

from __future__ import annotations

PREFIX = ".wh."
META_PREFIX = ".wh..wh."
OPAQUE = ".wh..wh..opq"

PREFIX_B = PREFIX.encode()
META_PREFIX_B = META_PREFIX.encode()
OPAQUE_B = OPAQUE.encode()

# Whiteouts and opaque markers are empty regular files; 0600 root:root is what Docker's
# overlay whiteout converter puts in layer tars, so both drivers export the same entries.
MARKER_MODE = 0o600

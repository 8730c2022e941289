"""Typed errors of the driver contract.

Every failure a caller can act on has its own class, so callers (the engine, the bench,
the CLI) can tell what went wrong without parsing messages or reading tracebacks.
All of them derive from `DriverError`, which derives from `Exception`.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every graphdriver error."""


class DriverNotSupported(DriverError):
    """The driver cannot run here; the message names what is missing."""

    def __init__(self, driver: str, reason: str) -> None:
        super().__init__(f"driver {driver!r} is not supported here: {reason}")
        self.driver = driver
        self.reason = reason


class InvalidOption(DriverError):
    """An option the driver does not know, or a value it cannot parse."""


class LayerNotFound(DriverError):
    def __init__(self, layer_id: str) -> None:
        super().__init__(f"layer {layer_id!r} does not exist")
        self.layer_id = layer_id


class LayerExists(DriverError):
    def __init__(self, layer_id: str) -> None:
        super().__init__(f"layer {layer_id!r} already exists")
        self.layer_id = layer_id


class ParentNotFound(DriverError):
    def __init__(self, layer_id: str, parent: str) -> None:
        super().__init__(f"cannot create layer {layer_id!r}: parent {parent!r} does not exist")
        self.layer_id = layer_id
        self.parent = parent


class LayerInUse(DriverError):
    def __init__(self, layer_id: str, detail: str = "it is mounted") -> None:
        super().__init__(f"layer {layer_id!r} is in use: {detail}")
        self.layer_id = layer_id


class InvalidLayerId(DriverError):
    def __init__(self, layer_id: object) -> None:
        super().__init__(
            f"invalid layer id {layer_id!r}: ids are 1-128 characters of [A-Za-z0-9_.-] "
            "starting with a letter or digit"
        )
        self.layer_id = layer_id


class UnsafeArchive(DriverError):
    """A layer tar that would write outside its layer or is malformed; nothing was applied."""


class QuotaNotSupported(DriverError):
    def __init__(self, driver: str, reason: str) -> None:
        super().__init__(f"driver {driver!r} cannot enforce a size limit: {reason}")
        self.driver = driver
        self.reason = reason


class DriverStateError(DriverError):
    """On-disk state the driver cannot use (corrupt metadata, a pool that is not ours...)."""


class LayerNotMounted(DriverError):
    """`put` without a matching `get`: the caller's reference counting is wrong."""

    def __init__(self, layer_id: str) -> None:
        super().__init__(f"layer {layer_id!r} is not mounted: put() without a matching get()")
        self.layer_id = layer_id


class AmbiguousPriorStorage(DriverError):
    """More than one driver has stored layers under the root; the user must choose."""


class ChainTooDeep(DriverError):
    """The backend cannot stack this many branches (kernel aufs stops at 127)."""


class ThinPoolError(DriverError):
    """A thin-pool operation failed; the message carries the backend's own words."""


class ThinPoolFull(DriverError):
    """The pool has too little free space to create another device; nothing was created."""


class FuseMountError(DriverError):
    """The FUSE process could not mount or serve a union."""


class EstargzError(DriverError):
    """A blob, footer or TOC that is not valid eStargz, or input it cannot be made from."""


class ChunkDigestMismatch(EstargzError):
    """A chunk whose bytes do not inflate to its TOC `chunkDigest`: never served to a reader."""

    def __init__(self, name: str, chunk_offset: int, expected: str, detail: str) -> None:
        super().__init__(f"chunk of {name!r} at file offset {chunk_offset} does not match {expected}: {detail}")
        self.name = name
        self.chunk_offset = chunk_offset
        self.expected = expected


class LazyNotSupported(DriverError):
    """The driver (or its backend) cannot serve a layer whose files are still arriving."""

    def __init__(self, driver: str, reason: str) -> None:
        super().__init__(f"driver {driver!r} cannot pull lazily: {reason}")
        self.driver = driver
        self.reason = reason

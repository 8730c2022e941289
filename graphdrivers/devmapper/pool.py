"""The thin-pool interface the device set is written against, with two backends.

A thin pool holds numbered thin devices. A device is created empty (`create_thin`) or as
a copy-on-write snapshot of another (`create_snap`), is made visible as a block device
by `activate`, and reports the pool's data and metadata use. `dmthin` is the kernel's
dm-thin (dmthinpool.py); `reflink` keeps each device as a sparse file on a filesystem
that shares extents, so a snapshot is a FICLONE (reflinkpool.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class PoolUsage:
    """Pool space in bytes, as `docker info` showed it (Data/Metadata Space Used/Total)."""

    block_size: int
    data_used: int
    data_total: int
    data_available: int
    metadata_used: int
    metadata_total: int
    metadata_available: int


class ActiveDevice(Protocol):
    """A device made visible as a block device; `release()` once it is mounted."""

    path: str

    def release(self) -> None: ...


class ThinPool(ABC):
    """A pool of thin devices addressed by integer device id (dm-thin's 24-bit ids)."""

    backend: ClassVar[str]
    name: str
    data_file: str
    metadata_file: str
    library_version: str

    @property
    def closes_devices(self) -> bool:
        """Whether `close` tears down what active devices need (a pool this instance set up)."""
        return False

    @abstractmethod
    def create_thin(self, device_id: int, size: int) -> None:
        """A new, zero-filled thin device of `size` bytes."""

    @abstractmethod
    def create_snap(self, device_id: int, origin_id: int, origin_mountpoint: str | None) -> None:
        """A copy-on-write snapshot of `origin_id`.

        `origin_mountpoint` is where the origin is mounted read-write, or None; a mounted
        origin is quiesced for the snapshot (dm-thin: suspend; reflink: FIFREEZE).
        """

    @abstractmethod
    def delete(self, device_id: int) -> None:
        """Delete the device; a device that does not exist is not an error (rollback)."""

    @abstractmethod
    def device_ids(self) -> set[int] | None:
        """Every device id in the pool, or None when the backend cannot list them."""

    @abstractmethod
    def busy(self, device_id: int) -> str | None:
        """Why the device cannot be deleted now (still active/open), or None."""

    @abstractmethod
    def activate(self, device_id: int, size: int) -> ActiveDevice:
        """Make the device a block device of `size` bytes."""

    @abstractmethod
    def deactivate(self, device_id: int) -> None:
        """Undo `activate` once the device is unmounted."""

    @abstractmethod
    def resize(self, device_id: int, size: int, active_path: str | None) -> None:
        """Grow the device to `size` bytes (and tell an active block device about it)."""

    @abstractmethod
    def usage(self) -> PoolUsage:
        """Everything `status()` shows; may be slow."""

    @abstractmethod
    def free_space(self) -> list[tuple[str, int, int]]:
        """(kind, available bytes, total bytes) of what must stay free; cheap, as it runs
        before every create."""

    def settle(self) -> None:  # noqa: B027 -- optional hook
        """Finish freeing space that deletes released lazily (before re-checking it)."""

    def set_transaction_id(self, old: int, new: int) -> None:  # noqa: B027 -- optional hook
        """Record the device set's transaction id in the pool itself (dm-thin keeps one)."""

    def transaction_id(self) -> int | None:
        """The transaction id the pool itself holds, or None when it keeps none."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Tear down what this object set up (pool mounts, dm tables); devices persist."""

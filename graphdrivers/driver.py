"""The driver contract: Docker's ProtoDriver + DiffDriver, as a Python base class.

The base class owns what every driver must get exactly the same way -- id validation,
existence and parent checks, thread-safe get/put reference counting, the rule that a
mounted layer cannot be removed, storage-option parsing -- and leaves drivers only the
storage-specific hooks (`_create`, `_remove`, `_mount`, `_unmount`, ...). Drivers with no
native diff inherit the generic one (Docker's NaiveDiffDriver) from this class.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, ClassVar

from . import naivediff
from .changes import Change
from .errors import (
    DriverError,
    InvalidLayerId,
    InvalidOption,
    LayerExists,
    LayerInUse,
    LayerNotFound,
    LayerNotMounted,
    LazyNotSupported,
    ParentNotFound,
    QuotaNotSupported,
)
from .locks import KeyedLocks
from .options import DriverOptions
from .units import parse_size

if TYPE_CHECKING:
    from .lazy.source import LazyBlob

log = logging.getLogger(__name__)

LAYER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")

def validate_id(layer_id: object) -> str:
    if not isinstance(layer_id, str) or not LAYER_ID_RE.match(layer_id):
        raise InvalidLayerId(layer_id)
    return layer_id


DISOWNED_DIR = ".disowned"  # in a driver home: one file per layer left mounted past its instance
PARTIAL = ".partial-"  # prefix of a disowned record being written (no layer id starts with "."), renamed when complete

class Driver(ABC):
    """Base of every graphdriver.

    Subclasses set `name`, `options_type` (a frozen `DriverOptions` dataclass: one field
    per option key, parsed once into `self.options`) and implement the storage hooks.
    `home` is the driver's own directory, `<root>/<name>`.

    `metadata(id)` keys are CamelCase, as Docker's graphdrivers name them (`UpperDir`,
    `LowerDir`, `WorkDir`, `MergedDir`, `DeviceId`, `DeviceSize`, `DeviceName`, ...), so a
    client reading GraphDriver.Data finds the names it knows; values are strings.
    """

    name: ClassVar[str]
    options_type: ClassVar[type[DriverOptions]] = DriverOptions
    supports_quota: ClassVar[bool] = False

    def __init__(self, home: str, options: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.options = self.options_type.parse(self.name, options or {})
        self._lock = threading.Lock()
        self._layer_locks = KeyedLocks()
        self._refs: dict[str, int] = {}
        self._paths: dict[str, str] = {}
        self._closed = False

    # -- options -----------------------------------------------------------------------

    def _parse_storage_opt(self, storage_opt: Mapping[str, str] | None) -> int | None:
        """The per-layer `size` in bytes, or None; anything else is an error."""
        if not storage_opt:
            return None
        unknown = set(storage_opt) - {"size"}
        if unknown:
            raise InvalidOption(f"unknown storage option(s) {sorted(unknown)} (known: size)")
        size = parse_size(storage_opt["size"], what="storage option size")
        if not self.supports_quota:
            raise QuotaNotSupported(self.name, self.quota_unsupported_reason())
        return size

    def quota_unsupported_reason(self) -> str:
        return "the driver has no per-layer size limit"

    # -- locking and reference counting -----------------------------------------------

    def _layer_lock(self, layer_id: str) -> AbstractContextManager[None]:
        """`with self._layer_lock(id):` -- one operation on a layer at a time."""
        with self._lock:
            self._check_open()
        return self._layer_locks.hold(layer_id)

    def _check_open(self) -> None:
        if self._closed:
            raise DriverError(f"driver {self.name!r} was cleaned up and cannot be used any more")

    def refcount(self, layer_id: str) -> int:
        return self._refs.get(layer_id, 0)

    # -- the contract ------------------------------------------------------------------

    def create(self, id: str, parent: str | None = None, *, storage_opt: Mapping[str, str] | None = None) -> None:
        """A read-only image layer on top of `parent`."""
        self._create_checked(id, parent, storage_opt, read_write=False)

    def create_read_write(
        self, id: str, parent: str | None = None, *, storage_opt: Mapping[str, str] | None = None
    ) -> None:
        """A writable container layer on top of `parent`."""
        self._create_checked(id, parent, storage_opt, read_write=True)

    def _create_checked(
        self, id: str, parent: str | None, storage_opt: Mapping[str, str] | None, *, read_write: bool
    ) -> None:
        validate_id(id)
        if parent is not None:
            validate_id(parent)
        size = self._parse_storage_opt(storage_opt)
        with self._layer_lock(id):
            if self._exists(id):
                raise LayerExists(id)
            if parent is not None and not self._exists(parent):
                raise ParentNotFound(id, parent)
            self._create(id, parent, size=size, read_write=read_write)

    def remove(self, id: str) -> None:
        validate_id(id)
        with self._layer_lock(id):
            if self._refs.get(id, 0) > 0:
                raise LayerInUse(id, f"it is mounted ({self._refs[id]} reference(s))")
            if self._disowned_path(id) is not None:
                raise LayerInUse(id, "an earlier instance left it mounted for a running container (get or adopt it, "
                                     "then put it)")
            if not self._exists(id):
                raise LayerNotFound(id)
            self._remove(id)
            log.debug("%s: removed layer %s", self.name, id)

    def get(self, id: str, mount_label: str = "") -> str:
        """Make the layer's full filesystem visible; every call needs a matching `put`. A
        layer an earlier instance disowned is still mounted (its container runs in it): the
        first `get` takes that mount over as its reference instead of mounting it again."""
        validate_id(id)
        with self._layer_lock(id):
            count = self._refs.get(id, 0)
            disowned = self._disowned_path(id) if count == 0 else None
            if disowned is not None:
                self._take_over(id, disowned)
                return disowned
            if count == 0:
                if not self._exists(id):
                    raise LayerNotFound(id)
                self._paths[id] = self._mount(id, mount_label)
                log.debug("%s: mounted layer %s at %s", self.name, id, self._paths[id])
            self._refs[id] = count + 1
            return self._paths[id]

    def put(self, id: str) -> None:
        validate_id(id)
        with self._layer_lock(id):
            count = self._refs.get(id, 0)
            if count == 0:
                raise LayerNotMounted(id)
            if count == 1:
                self._unmount(id)
                log.debug("%s: unmounted layer %s", self.name, id)
                del self._refs[id]
                del self._paths[id]
            else:
                self._refs[id] = count - 1

    def exists(self, id: str) -> bool:
        validate_id(id)
        return self._exists(id)

    # -- mounts that outlive the instance (detached containers) --------------------------

    def disown(self, id: str) -> str:
        """Give up this instance's hold on a mounted layer without unmounting it; returns
        where it is mounted. The mount outlives the instance (a detached container runs in
        it after the engine that started it has exited): it is recorded under the home so
        that no later instance's recovery unmounts it, until one takes it back with `adopt`."""
        validate_id(id)
        reason = self.disown_unsupported()
        if reason is not None:
            raise DriverError(f"{self.name} cannot leave layer {id} mounted past this process: {reason}")
        with self._layer_lock(id):
            if not self._refs.get(id):
                raise LayerNotMounted(id)
            path = self._paths.pop(id)
            del self._refs[id]
            os.makedirs(self._disowned_dir, mode=0o700, exist_ok=True)
            partial = os.path.join(self._disowned_dir, PARTIAL + id)
            with open(partial, "w") as f:  # a crash leaves no empty record, only a partial one
                f.write(path)
            os.replace(partial, os.path.join(self._disowned_dir, id))
            self._disown(id, path)
            log.debug("%s: layer %s stays mounted at %s past this instance", self.name, id, path)
            return path

    def adopt(self, id: str, path: str) -> None:
        """Take over the mount at `path` of a layer an earlier instance disowned, as one
        reference: `put` unmounts it."""
        validate_id(id)
        with self._layer_lock(id):
            if self._refs.get(id):
                raise LayerInUse(id, "this instance has mounted it itself")
            self._take_over(id, path)

    def _take_over(self, id: str, path: str) -> None:
        """One reference to the disowned mount at `path`, and the record of it gone."""
        self._refs[id] = 1
        self._paths[id] = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._disowned_dir, id))

    def is_disowned(self, id: str) -> bool:
        """Whether an instance left the layer mounted past its end (see `disown`)."""
        return self._disowned_path(id) is not None

    def _disowned_path(self, id: str) -> str | None:
        """Where a disowned layer is mounted, from its record; None without a (complete) one."""
        try:
            with open(os.path.join(self._disowned_dir, id)) as f:
                return f.read() or None
        except FileNotFoundError:
            return None

    def disowned_mounts(self) -> set[str]:
        """Mount points of disowned layers: recovery at startup must leave them mounted."""
        try:
            names = os.listdir(self._disowned_dir)
        except FileNotFoundError:
            return set()
        found = set()
        for name in names:
            if name.startswith(PARTIAL):
                continue  # disown crashed before the record was complete: nothing was left mounted by it
            with contextlib.suppress(OSError), open(os.path.join(self._disowned_dir, name)) as f:
                path = f.read()
                if path:  # an empty record (written in place by older versions) names nothing
                    found.add(os.path.realpath(path))
        return found

    def disown_unsupported(self) -> str | None:
        """Why this instance cannot leave a mount behind when it ends (None: it can)."""
        return None

    @property
    def _disowned_dir(self) -> str:
        return os.path.join(self.home, DISOWNED_DIR)

    def _disown(self, id: str, path: str) -> None:  # noqa: B027 -- optional hook
        """Stop tracking whatever keeps the mount alive (aufs: its FUSE process) without ending it."""

    def cleanup(self) -> None:
        """Unmount everything this driver mounted; the driver is unusable afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            mounted = list(self._refs)
        errors = []
        for layer_id in mounted:
            try:
                self._unmount(layer_id)
            except Exception as exc:  # keep unmounting the rest, report all at the end
                log.warning("%s: cleanup could not unmount layer %s: %s", self.name, layer_id, exc)
                errors.append(f"{layer_id}: {exc}")
        self._refs.clear()
        self._paths.clear()
        self._cleanup()
        if errors:
            raise DriverError(f"cleanup of {self.name!r} could not unmount: " + "; ".join(errors))

    # -- lazy layers: files fetched from a registry on first read ----------------------

    def lazy_unsupported(self) -> str | None:
        """Why this driver cannot hold lazy layers (None: it can)."""
        return "it must have a layer's data before it can mount it (lazy pull needs aufs with aufs.backend=fuse)"

    def create_lazy(self, id: str, parent: str | None, blob: LazyBlob) -> int:
        """A read-only layer whose metadata comes from `blob`'s eStargz TOC at once and
        whose files arrive from the registry when first read (or in the background).
        Returns the bytes of file data the layer will hold. `LazyNotSupported` (naming
        the driver) where the driver cannot serve such a layer."""
        reason = self.lazy_unsupported()
        if reason is not None:
            raise LazyNotSupported(self.name, reason)
        validate_id(id)
        if parent is not None:
            validate_id(parent)
        with self._layer_lock(id):
            if self._exists(id):
                raise LayerExists(id)
            if parent is not None and not self._exists(parent):
                raise ParentNotFound(id, parent)
            return self._create_lazy(id, parent, blob)

    def _create_lazy(self, id: str, parent: str | None, blob: LazyBlob) -> int:
        raise LazyNotSupported(self.name, self.lazy_unsupported() or "not implemented")

    def lazy_status(self, id: str) -> dict[str, object] | None:
        """A lazy layer's progress (State lazy|complete|bad, Files/BytesFetched of Total,
        Reason, LastError); None for an ordinary layer."""
        return None

    def lazy_complete(self, id: str) -> str | None:
        """Fetch all of a lazy layer now and verify it; returns the path of its verified
        blob (the engine records its tar-split, then calls `lazy_forget`), or None for an
        ordinary layer. `DriverError` when the layer is bad or the registry fails."""
        return None

    def lazy_forget(self, id: str) -> None:  # noqa: B027 -- optional hook
        """Drop a complete lazy layer's state: it is an ordinary layer from now on."""

    @abstractmethod
    def status(self) -> list[tuple[str, str]]:
        """Rows `docker info` shows under Storage Driver."""

    @abstractmethod
    def metadata(self, id: str) -> dict[str, str]:
        """Driver facts about one layer."""

    # -- generic diff (NaiveDiffDriver); drivers with a native diff override these ------

    def changes(self, id: str, parent: str | None = None) -> list[Change]:
        with self._mounted(id) as layer_dir, self._mounted(parent) as parent_dir:
            return naivediff.changes(layer_dir, parent_dir)

    def diff(self, id: str, parent: str | None = None) -> IO[bytes]:
        """A stream of the uncompressed tar of what `id` changed over `parent`; close it."""
        layer_dir = self.get(id)
        try:
            parent_dir = self.get(parent) if parent is not None else None
        except BaseException:
            self.put(id)
            raise

        def release() -> None:
            self.put(id)
            if parent is not None:
                self.put(parent)

        try:
            found = naivediff.changes(layer_dir, parent_dir)
            return naivediff.export_stream(layer_dir, found, on_close=release)
        except BaseException:
            release()
            raise

    def diff_size(self, id: str, parent: str | None = None) -> int:
        with self._mounted(id) as layer_dir, self._mounted(parent) as parent_dir:
            return naivediff.changes_size(layer_dir, naivediff.changes(layer_dir, parent_dir))

    def apply_diff(self, id: str, parent: str | None, stream: IO[bytes]) -> int:
        """Extract a layer tar into `id`; returns the bytes of file data applied."""
        with self._mounted(id) as layer_dir:
            return naivediff.apply(layer_dir, stream)

    def _mounted(self, id: str | None) -> _Mounted:
        return _Mounted(self, id)

    # -- hooks -------------------------------------------------------------------------

    @abstractmethod
    def _exists(self, id: str) -> bool: ...

    @abstractmethod
    def _create(self, id: str, parent: str | None, *, size: int | None, read_write: bool) -> None:
        """Make the layer; on any failure leave no trace of it."""

    @abstractmethod
    def _remove(self, id: str) -> None: ...

    @abstractmethod
    def _mount(self, id: str, mount_label: str) -> str:
        """Make the layer visible (first reference) and return its path."""

    @abstractmethod
    def _unmount(self, id: str) -> None:
        """Undo `_mount` (last reference)."""

    def _cleanup(self) -> None:  # noqa: B027 -- optional hook, most drivers need none
        """Driver-wide teardown after every layer is unmounted (pools, backing mounts)."""


class _Mounted:
    """`with driver._mounted(id) as path`: get/put around a block; None stays None."""

    def __init__(self, driver: Driver, id: str | None) -> None:
        self.driver = driver
        self.id = id

    def __enter__(self) -> str | None:
        return self.driver.get(self.id) if self.id is not None else None

    def __exit__(self, *exc: object) -> None:
        if self.id is not None:
            self.driver.put(self.id)

"""The device set: which thin device holds which layer, made crash-consistent.

State on disk, as Docker's devicemapper driver keeps it:
- `deviceset-metadata`: next_device_id and the base device's UUID and filesystem;
- `metadata/<id>`: one JSON file a layer (device_id, size, transaction_id,
  initialized, deleted); the base device is `metadata/.base` (layer ids cannot start
  with a dot, so it never collides with a layer);
- `transaction-metadata`: the open transaction, if any. Creating and deleting a device
  are transactions: the record is written first, then the pool is changed, then the
  layer's metadata, then the record is closed. At start an open transaction is completed
  (its metadata is there and whole) or rolled back (the device is deleted), so a crash
  leaves neither an orphaned device nor metadata without a device.

The transaction record is one fixed-size `pwrite` on a descriptor kept open, so it is
atomic against the process dying (kill -9) without a temp file and rename on every
create; per-layer metadata is written once, to a new file, inside the transaction.
Nothing is fsynced: the consistency promised is against the process dying, which is what
Docker's driver promised too; the reflink backend also deletes device files no metadata
names at start, which covers what a power loss could leave.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .. import mountutil
from ..errors import DriverError, DriverStateError, InvalidOption, LayerInUse, ThinPoolFull
from ..units import human_size
from . import fsutil
from .pool import ThinPool

log = logging.getLogger(__name__)

T = TypeVar("T")

BASE = ".base"
TXN_RECORD_SIZE = 512
FULL_SLACK = 16 << 20  # a pool with less free than this (or 1%) is full for error reporting
BUSY_WAIT = 2.0  # seconds a remove waits for a busy device before failing or deferring
MAX_DEVICE_ID = (1 << 24) - 1  # dm-thin device ids are 24 bits


@dataclass
class DeviceInfo:
    """One device, as stored in `metadata/<id>`."""

    device_id: int
    size: int
    transaction_id: int
    initialized: bool = True
    deleted: bool = False
    fs: str = ""  # the filesystem on the device (snapshots inherit their origin's)


@dataclass(frozen=True)
class Settings:
    """The options the device set needs (parsed by the driver)."""

    base_size: int
    base_size_given: bool
    fs: str
    fs_given: bool
    mkfs_args: tuple[str, ...]
    mount_options: str
    min_free_percent: int
    deferred_deletion: bool


class DeviceSet:
    def __init__(self, home: str, pool: ThinPool, settings: Settings, keep: frozenset[str] = frozenset()) -> None:
        """`keep`: paths whose mounts recovery leaves mounted (detached containers run in them):
        a mount point that is one of them or holds one (mnt/<id> for mnt/<id>/rootfs)."""
        self.home = home
        self._keep = keep
        self.pool = pool
        self.settings = settings
        self.metadata_dir = os.path.join(home, "metadata")
        self.mnt_dir = os.path.join(home, "mnt")
        self._deviceset_file = os.path.join(home, "deviceset-metadata")
        self._lock = threading.Lock()
        os.makedirs(self.metadata_dir, exist_ok=True)
        os.makedirs(self.mnt_dir, exist_ok=True)
        self.devices: dict[str, DeviceInfo] = {}
        self._deferred: set[str] = set()
        stored = self._read_json(self._deviceset_file) or {}
        self.next_device_id = int(stored.get("next_device_id", 1))
        self._txn_fd = os.open(os.path.join(home, "transaction-metadata"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._load()
            self._recover()
            self._used_ids = {info.device_id for info in self.devices.values()}
            self._setup_base(stored)
            self._retry_deferred()
            self._save_deviceset()
        except BaseException:
            os.close(self._txn_fd)
            raise

    # -- loading and recovery ----------------------------------------------------------

    @staticmethod
    def _read_json(path: str) -> dict | None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise DriverStateError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise DriverStateError(f"{path} does not hold a JSON object")
        return value

    def _metadata_path(self, layer_id: str) -> str:
        return os.path.join(self.metadata_dir, layer_id)

    def _load(self) -> None:
        for name in os.listdir(self.metadata_dir):
            if name.endswith(".tmp"):
                os.unlink(self._metadata_path(name))
                continue
            try:
                raw = self._read_json(self._metadata_path(name))
                info = DeviceInfo(**raw) if raw else None
            except (DriverStateError, TypeError):
                info = None
            if info is None:
                # Only a create interrupted mid-write leaves a partial file; recovery of the
                # open transaction decides what it was. Anything else is corruption.
                self.devices[name] = DeviceInfo(device_id=-1, size=0, transaction_id=-1, initialized=False)
                continue
            self.devices[name] = info
            if info.deleted:
                self._deferred.add(name)
            self.next_device_id = max(self.next_device_id, info.device_id + 1)
        txn = self._read_txn()
        self.transaction_id = int(txn.get("transaction_id", 0))

    def _read_txn(self) -> dict:
        data = os.pread(self._txn_fd, TXN_RECORD_SIZE, 0)
        if not data.strip(b"\0 \n"):
            return {}
        try:
            return json.loads(data.decode())
        except ValueError as exc:
            raise DriverStateError(f"{self.home}/transaction-metadata is not valid JSON: {exc}") from None

    def _recover(self) -> None:
        for point in set(mountutil.mounts_under(self.mnt_dir)):
            if any(kept == point or kept.startswith(point + "/") for kept in self._keep):
                continue  # a disowned layer's mount: `get` returned its rootfs/ below the mount point
            log.info("devmapper: unmounting %s, left mounted by a process that died", point)
            mountutil.umount_retry(point)
        txn = self._read_txn()
        if txn and txn["open_transaction_id"] > txn["transaction_id"]:
            layer, device_id = txn["device_hash"], int(txn["device_id"])
            self.next_device_id = max(self.next_device_id, device_id + 1)
            info = self.devices.get(layer)
            completed = txn["op"] == "create" and info is not None and info.device_id == device_id
            if not completed:  # roll back a create, finish a delete: the device goes
                log.info("devmapper: undoing the interrupted %s of %s (device %d)", txn["op"], layer, device_id)
                self.pool.delete(device_id)
                if info is not None and info.device_id in (device_id, -1):
                    os.unlink(self._metadata_path(layer))
                    del self.devices[layer]
                    self._deferred.discard(layer)
            self.transaction_id = int(txn["open_transaction_id"])
            self._write_txn(None)
        in_pool = self.pool.transaction_id()
        if in_pool is not None and in_pool != self.transaction_id:
            # dm-thin: a crash between the pool message and closing the record; the pool's
            # own id is the truth the next set_transaction_id must start from.
            self.transaction_id = in_pool
            self._write_txn(None)
        broken = [name for name, info in self.devices.items() if info.device_id < 0]
        if broken:
            raise DriverStateError(f"unreadable device metadata in {self.metadata_dir}: {', '.join(sorted(broken))}")
        pool_ids = self.pool.device_ids()
        if pool_ids is not None:
            known = {info.device_id for info in self.devices.values()}
            for orphan in pool_ids - known:
                log.info("devmapper: deleting device %d, which no layer owns", orphan)
                self.pool.delete(orphan)

    # -- the base device ---------------------------------------------------------------

    def _setup_base(self, stored: dict) -> None:
        base = self.devices.get(BASE)
        if base is None:
            if self.devices:
                raise DriverStateError(f"{self.metadata_dir} holds layers but no base device metadata")
            self._create_base()
            return
        fs, found_uuid = self._with_active(base, fsutil.read_uuid)
        want_uuid = stored.get("base_device_uuid")
        if want_uuid and want_uuid != found_uuid:
            raise DriverStateError(
                f"devmapper: current base device UUID {found_uuid} does not match the stored UUID "
                f"{want_uuid} in {self._deviceset_file}: possibly a different thin pool than last time "
                f"(pool {self.pool.name}, data {self.pool.data_file})"
            )
        self.base_uuid, self.base_fs = found_uuid, fs
        base.fs = base.fs or fs
        if self.settings.fs_given and self.settings.fs != fs:
            raise DriverStateError(
                f"devmapper: the base device's filesystem is {fs} but dm.fs is {self.settings.fs}; "
                "remove the driver's storage to change it"
            )
        if self.settings.base_size_given and self.settings.base_size != base.size:
            if self.settings.base_size < base.size:
                raise InvalidOption(
                    f"devmapper: dm.basesize {human_size(self.settings.base_size)} is smaller than the existing "
                    f"base device ({human_size(base.size)}); it can only grow"
                )
            self._grow(base, self.settings.base_size)
            self._rewrite_metadata(BASE, base)

    def _create_base(self) -> None:
        device_id = self._allocate_id()
        self._open_txn("create", BASE, device_id)
        info = DeviceInfo(device_id, self.settings.base_size, self.transaction_id + 1, False, fs=self.settings.fs)
        try:
            self._check_free_space()
            self._make_formatted(info)
            self.base_fs, self.base_uuid = self._with_active(info, fsutil.read_uuid)
            self._save_metadata(BASE, info)
        except BaseException:
            self._rollback(BASE, device_id)
            raise
        self._close_txn()
        self.devices[BASE] = info

    def _make_formatted(self, info: DeviceInfo) -> None:
        """A new thin device holding a fresh filesystem with an empty `rootfs/`."""
        self.pool.create_thin(info.device_id, info.size)

        def format_device(path: str) -> None:
            fsutil.mkfs(info.fs, path, self.settings.mkfs_args if info.fs == self.settings.fs else ())
            self._with_mounted(path, info.fs, lambda mnt: os.makedirs(os.path.join(mnt, "rootfs"), exist_ok=True))

        self._with_active(info, format_device)
        info.initialized = True

    def _with_active(self, info: DeviceInfo, fn: Callable[[str], T]) -> T:
        """Run `fn(block device path)` with the device activated (setup paths only)."""
        active = self.pool.activate(info.device_id, info.size)
        try:
            return fn(active.path)
        finally:
            active.release()
            self.pool.deactivate(info.device_id)

    def _with_mounted(self, device_path: str, fs: str, fn: Callable[[str], T]) -> T:
        mnt = os.path.join(self.mnt_dir, ".setup")
        os.makedirs(mnt, exist_ok=True)
        flags, data = self.mount_options(fs)
        try:
            mountutil.mount(device_path, mnt, fs, flags, data)
        except OSError as exc:
            if exc.errno == errno.EINVAL and self.settings.mount_options and fs == self.settings.fs:
                raise InvalidOption(f"dm.mountopt {self.settings.mount_options!r}: {exc}") from None
            raise
        try:
            return fn(mnt)
        finally:
            mountutil.umount_retry(mnt)
            os.rmdir(mnt)

    def _grow(self, info: DeviceInfo, size: int) -> None:
        """Grow a device that is not mounted, and the filesystem on it, to `size` bytes."""

        self.pool.resize(info.device_id, size, None)
        info.size = size
        if info.fs == "xfs":
            self._with_active(info, lambda path: self._with_mounted(path, "xfs", fsutil.grow_mounted))
        else:
            self._with_active(info, fsutil.grow_unmounted)

    def mount_options(self, fs: str) -> tuple[int, str]:
        """Mount data for a device holding `fs`: dm.mountopt applies to devices of dm.fs
        (the options are filesystem-specific), plus what every snapshot needs."""
        return fsutil.mount_options(fs, self.settings.mount_options if fs == self.settings.fs else "")

    # -- transactions ------------------------------------------------------------------

    def _allocate_id(self) -> int:
        for _ in range(MAX_DEVICE_ID):
            device_id = self.next_device_id
            self.next_device_id = device_id + 1 if device_id < MAX_DEVICE_ID else 1
            if device_id not in self._used_ids:
                self._used_ids.add(device_id)
                return device_id
        raise DriverError("devmapper: no free device id left (2^24 devices in use)")

    def _write_txn(self, open_op: tuple[str, str, int] | None) -> None:
        record = {"transaction_id": self.transaction_id, "open_transaction_id": self.transaction_id}
        if open_op is not None:
            op, layer, device_id = open_op
            record.update(open_transaction_id=self.transaction_id + 1, op=op, device_hash=layer, device_id=device_id)
        data = json.dumps(record).encode().ljust(TXN_RECORD_SIZE)
        os.pwrite(self._txn_fd, data, 0)

    def _open_txn(self, op: str, layer: str, device_id: int) -> None:
        self._write_txn((op, layer, device_id))

    def _close_txn(self) -> None:
        self.pool.set_transaction_id(self.transaction_id, self.transaction_id + 1)
        self.transaction_id += 1
        self._write_txn(None)

    def _rollback(self, layer: str, device_id: int) -> None:
        """Undo a create that failed in this process: no device, no metadata, record closed."""
        log.warning("devmapper: create of %s failed; deleting its device %d", layer, device_id)
        self.pool.delete(device_id)
        self._used_ids.discard(device_id)
        try:
            os.unlink(self._metadata_path(layer))
        except FileNotFoundError:
            pass
        self._write_txn(None)

    def _save_metadata(self, layer: str, info: DeviceInfo) -> None:
        """Record a new device: a new file, written once (the open transaction covers a
        crash half-way through)."""
        fd = os.open(self._metadata_path(layer), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(vars(info)).encode())
        finally:
            os.close(fd)

    def _rewrite_metadata(self, layer: str, info: DeviceInfo) -> None:
        tmp = self._metadata_path(layer) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(vars(info), f)
        os.replace(tmp, self._metadata_path(layer))

    def _save_deviceset(self) -> None:
        data = {
            "next_device_id": self.next_device_id,
            "base_device_uuid": self.base_uuid,
            "base_device_filesystem": self.base_fs,
        }
        tmp = self._deviceset_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self._deviceset_file)

    # -- space -------------------------------------------------------------------------

    def _check_free_space(self) -> None:
        pct = self.settings.min_free_percent
        if all(free * 100 >= total * pct for _, free, total in self.pool.free_space()):
            return
        self.pool.settle()  # space that removed layers are still releasing counts as free
        for kind, free, total in self.pool.free_space():
            if free * 100 >= total * pct:
                continue
            raise ThinPoolFull(
                f"devmapper: thin pool {self.pool.name} has {human_size(free)} of {human_size(total)} {kind} "
                f"free ({human_size(total - free)} used), less than the minimum {pct}% "
                f"({human_size(total * pct // 100)}); free space in the pool or lower dm.min_free_space"
            )

    # -- the operations the driver uses -------------------------------------------------

    def exists(self, layer_id: str) -> bool:
        info = self.devices.get(layer_id)
        return info is not None and not info.deleted

    def get(self, layer_id: str) -> DeviceInfo:
        return self.devices[layer_id]

    def create(self, layer_id: str, parent: str | None, size: int | None, origin_mountpoint: str | None) -> None:
        """Snapshot `parent` (the base device when None) as `layer_id`, grown to `size`."""
        with self._lock:
            self._retry_deferred()
            if layer_id in self._deferred:
                raise LayerInUse(layer_id, "its previous device is waiting for deferred deletion")
            origin = self.devices[parent if parent is not None else BASE]
            fresh = parent is None and size is not None and size < origin.size
            if size is not None and size < origin.size and not fresh:
                of = f"layer {parent!r}" if parent else "the base device"
                raise InvalidOption(
                    f"devmapper: container size {human_size(size)} cannot be smaller than "
                    f"{human_size(origin.size)} (the size of {of})"
                )
            self._check_free_space()
            device_id = self._allocate_id()
            self._open_txn("create", layer_id, device_id)
            info = DeviceInfo(device_id, origin.size, self.transaction_id + 1, fs=origin.fs)
            try:
                if fresh:
                    # A parentless layer smaller than the base device cannot be a snapshot
                    # of it (filesystems do not shrink): it gets a device of its own size,
                    # freshly formatted -- with ext4 when xfs's 300 MiB floor forbids xfs.
                    info.size = size
                    info.fs = "ext4" if info.fs == "xfs" and size < fsutil.XFS_MIN_SIZE else info.fs
                    self._make_formatted(info)
                else:
                    self.pool.create_snap(device_id, origin.device_id, origin_mountpoint)
                if size is not None and size > info.size:
                    self._grow(info, size)
                self._save_metadata(layer_id, info)
            except BaseException as exc:
                full = self._out_of_space(exc)  # judged before the rollback frees space
                self._rollback(layer_id, device_id)
                if full is not None:
                    lines = str(exc).splitlines()
                    cause = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
                    raise ThinPoolFull(
                        f"devmapper: thin pool {self.pool.name} ran out of space while creating the device of "
                        f"{layer_id!r} ({cause.strip()}); {full}. Nothing was created."
                    ) from exc
                raise
            self._close_txn()
            self.devices[layer_id] = info

    def _out_of_space(self, exc: BaseException) -> str | None:
        """The pool's numbers when `exc` came from the pool running out of space (ENOSPC
        from the clone, or I/O errors of a device whose pool is full), else None."""
        if not isinstance(exc, (OSError, fsutil.FilesystemError)):
            return None
        usage = self.pool.usage()
        nearly_full = usage.data_available < max(usage.data_total // 100, FULL_SLACK)
        if not (nearly_full or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))):
            return None
        return (
            f"data {human_size(usage.data_used)} used of {human_size(usage.data_total)}, "
            f"{human_size(usage.data_available)} available"
        )

    def delete(self, layer_id: str) -> None:
        with self._lock:
            self._retry_deferred()
            info = self.devices[layer_id]
            busy = self.pool.busy(info.device_id)
            if busy is not None and not self.settings.deferred_deletion:
                busy = self._busy(info.device_id)
            if busy is not None:
                if not self.settings.deferred_deletion:
                    raise LayerInUse(layer_id, busy)
                log.info("devmapper: deletion of %s deferred: %s", layer_id, busy)
                info.deleted = True
                self._rewrite_metadata(layer_id, info)
                self._deferred.add(layer_id)
                return
            self._delete_now(layer_id, info)

    def _busy(self, device_id: int) -> str | None:
        """Why the device is busy, after waiting up to BUSY_WAIT for it to stop being so:
        a container started while the layer was mounted holds a copy of the mount for
        as long as its mount namespace lives (milliseconds, usually), as Docker's
        devicemapper retried a busy removal."""
        deadline = time.monotonic() + BUSY_WAIT
        while (busy := self.pool.busy(device_id)) is not None and time.monotonic() < deadline:
            time.sleep(0.005)
        return busy

    def _delete_now(self, layer_id: str, info: DeviceInfo) -> None:
        self._open_txn("delete", layer_id, info.device_id)
        self.pool.delete(info.device_id)
        os.unlink(self._metadata_path(layer_id))
        del self.devices[layer_id]
        self._used_ids.discard(info.device_id)
        self._deferred.discard(layer_id)
        self._close_txn()

    def _retry_deferred(self) -> None:
        if not self._deferred:
            return
        for layer_id in list(self._deferred):
            info = self.devices[layer_id]
            if self.pool.busy(info.device_id) is None:
                self._delete_now(layer_id, info)

    def deferred(self) -> list[str]:
        return sorted(self._deferred)

    def retry_deferred(self) -> None:
        with self._lock:
            self._retry_deferred()

    def close(self) -> None:
        with self._lock:
            self._retry_deferred()
            self._save_deviceset()
            os.close(self._txn_fd)

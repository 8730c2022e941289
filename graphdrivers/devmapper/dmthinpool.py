"""The `dmthin` thin-pool backend: the kernel's dm-thin, driven through dmsetup.

Like Docker's devicemapper driver: the pool is either a given `dm.thinpooldev` or, as in
loop-lvm, a `thin-pool` table over two loop-attached sparse files
(`devmapper/data` of `dm.loopdatasize`, `devmapper/metadata` of `dm.loopmetadatasize`).
Devices are made with the pool messages `create_thin` / `create_snap` (an active origin
is suspended around the snapshot, which also freezes its filesystem) and `delete`, and
activated with a `thin` table. dmsetup runs once per operation: these are the slow paths
dm-thin has anyway (each is an ioctl round trip plus udev in the real driver too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from .. import loopdev
from ..errors import ThinPoolError
from .pool import PoolUsage, ThinPool

SECTOR = 512
DEFAULT_BLOCK_SIZE = 64 << 10  # Docker's dm.blocksize default
LOW_WATER_MARK = 32768  # blocks, as Docker
METADATA_BLOCK = 4096


def unavailable_reason() -> str | None:
    """Why dm-thin cannot be used here, or None when it can."""
    if not os.path.exists("/dev/mapper/control"):
        return "no device-mapper: /dev/mapper/control is missing (kernel without CONFIG_BLK_DEV_DM?)"
    if shutil.which("dmsetup") is None:
        return "dmsetup is not installed (apt-get install dmsetup)"
    try:
        targets = _dmsetup(["targets"])
    except ThinPoolError as exc:
        return f"device-mapper does not answer: {exc}"
    if "thin-pool" not in targets:
        return "the kernel's device-mapper has no thin-pool target (modprobe dm_thin_pool)"
    return None


def _dmsetup(args: Sequence[str]) -> str:
    argv = ["dmsetup", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ThinPoolError("dmsetup is not installed") from None
    if proc.returncode != 0:
        raise ThinPoolError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class _DmActive:
    path: str

    def release(self) -> None:
        """dm devices stay active until `dmsetup remove`; nothing is held open here."""


class DmThinPool(ThinPool):
    backend = "dmthin"

    def __init__(
        self,
        home: str,
        *,
        name: str,
        thinpooldev: str | None,
        data_size: int,
        metadata_size: int,
        deferred_removal: bool,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self.prefix = name.removesuffix("-pool")
        self.deferred_removal = deferred_removal
        self.block_size = block_size
        self._own_pool = False
        version = _dmsetup(["version"]).splitlines()
        self.library_version = version[0].split(":", 1)[-1].strip() if version else "unknown"
        if thinpooldev:
            self.name = os.path.basename(thinpooldev)
            self.data_file = self.metadata_file = ""
        else:
            self.name = name
            loopdir = os.path.join(home, "devmapper")
            os.makedirs(loopdir, exist_ok=True)
            self.data_file = os.path.join(loopdir, "data")
            self.metadata_file = os.path.join(loopdir, "metadata")
            if not self._pool_exists():
                self._create_loop_pool(data_size, metadata_size)
        self.pool_device = f"/dev/mapper/{self.name}"
        if not self._pool_exists():
            raise ThinPoolError(f"thin pool {self.name!r} does not exist")
        # "0 <len> thin-pool <meta dev> <data dev> <block sectors> <low water> ...": a given
        # pool keeps the block size it was made with.
        self.block_size = int(_dmsetup(["table", self.name]).split()[5]) * SECTOR

    def _pool_exists(self) -> bool:
        try:
            _dmsetup(["info", self.name])
        except ThinPoolError:
            return False
        return True

    def _create_loop_pool(self, data_size: int, metadata_size: int) -> None:
        for path, size in ((self.data_file, data_size), (self.metadata_file, metadata_size)):
            if not os.path.exists(path):
                with open(path, "xb") as f:  # sparse; a zeroed metadata start = a new pool
                    f.truncate(size)
        data = loopdev.attach(self.data_file)
        try:
            meta = loopdev.attach(self.metadata_file)
            try:
                sectors = os.path.getsize(self.data_file) // SECTOR
                table = (
                    f"0 {sectors} thin-pool {meta.path} {data.path} "
                    f"{self.block_size // SECTOR} {LOW_WATER_MARK} 1 skip_block_zeroing"
                )
                _dmsetup(["create", self.name, "--table", table])
                _dmsetup(["mknodes", self.name])
                self._own_pool = True
            finally:  # the pool holds both open now; autoclear detaches them when it goes
                meta.release()
        finally:
            data.release()

    @property
    def closes_devices(self) -> bool:
        return self._own_pool

    def close(self) -> None:
        if self._own_pool:
            _dmsetup(["remove", self.name])
            self._own_pool = False

    # -- devices ------------------------------------------------------------------------

    def _dev_name(self, device_id: int) -> str:
        return f"{self.prefix}-{device_id}"

    def _message(self, text: str) -> None:
        _dmsetup(["message", self.name, "0", text])

    def _active(self, device_id: int) -> bool:
        try:
            _dmsetup(["info", self._dev_name(device_id)])
        except ThinPoolError:
            return False
        return True

    def create_thin(self, device_id: int, size: int) -> None:
        self._message(f"create_thin {device_id}")

    def create_snap(self, device_id: int, origin_id: int, origin_mountpoint: str | None) -> None:
        origin = self._dev_name(origin_id)
        if not self._active(origin_id):
            self._message(f"create_snap {device_id} {origin_id}")
            return
        _dmsetup(["suspend", origin])  # flushes and freezes the filesystem on it
        try:
            self._message(f"create_snap {device_id} {origin_id}")
        finally:
            _dmsetup(["resume", origin])

    def delete(self, device_id: int) -> None:
        try:
            self._message(f"delete {device_id}")
        except ThinPoolError as exc:
            if "No data available" not in str(exc) and "ENODATA" not in str(exc):
                raise

    def device_ids(self) -> None:
        """dm-thin lists its devices only through thin_ls on a metadata snapshot; the
        transaction record alone decides recovery on this backend (as in Docker)."""
        return None

    def busy(self, device_id: int) -> str | None:
        if not self._active(device_id):
            return None
        out = _dmsetup(["info", "-c", "--noheadings", "-o", "open", self._dev_name(device_id)]).strip()
        return f"{self._dev_name(device_id)} is open {out} time(s)" if out not in ("", "0") else None

    def _table(self, device_id: int, size: int) -> str:
        return f"0 {size // SECTOR} thin {self.pool_device} {device_id}"

    def activate(self, device_id: int, size: int) -> _DmActive:
        name = self._dev_name(device_id)
        if not self._active(device_id):
            _dmsetup(["create", name, "--table", self._table(device_id, size)])
            _dmsetup(["mknodes", name])
        return _DmActive(f"/dev/mapper/{name}")

    def deactivate(self, device_id: int) -> None:
        if self._active(device_id):
            args = ["remove", "--deferred"] if self.deferred_removal else ["remove"]
            _dmsetup([*args, self._dev_name(device_id)])

    def resize(self, device_id: int, size: int, active_path: str | None) -> None:
        """A thin device's size is its table's length: reload the table when active."""
        if active_path is not None:
            name = self._dev_name(device_id)
            _dmsetup(["load", name, "--table", self._table(device_id, size)])
            _dmsetup(["resume", name])

    def set_transaction_id(self, old: int, new: int) -> None:
        self._message(f"set_transaction_id {old} {new}")

    def transaction_id(self) -> int:
        return int(self._status()[3])

    def _status(self) -> list[str]:
        # "0 <len> thin-pool <transaction id> <used>/<total> meta <used>/<total> data ..."
        return _dmsetup(["status", self.name]).split()

    def free_space(self) -> list[tuple[str, int, int]]:
        usage = self.usage()
        return [
            ("data", usage.data_available, usage.data_total),
            ("metadata", usage.metadata_available, usage.metadata_total),
        ]

    def usage(self) -> PoolUsage:
        fields = self._status()
        meta_used, meta_total = (int(x) for x in fields[4].split("/"))
        data_used, data_total = (int(x) for x in fields[5].split("/"))
        bs = self.block_size
        return PoolUsage(
            block_size=bs,
            data_used=data_used * bs,
            data_total=data_total * bs,
            data_available=(data_total - data_used) * bs,
            metadata_used=meta_used * METADATA_BLOCK,
            metadata_total=meta_total * METADATA_BLOCK,
            metadata_available=(meta_total - meta_used) * METADATA_BLOCK,
        )

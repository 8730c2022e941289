"""The devmapper driver: every layer is a thin device holding a real filesystem.

Layer `<id>` is a thin snapshot of its parent's device (of the base device when it has
no parent), mounted at `devmapper/mnt/<id>` with its files under `rootfs/`, as in
Docker. The pool behind the devices is dm-thin when the kernel has device-mapper, else
the reflink pool (see pool.py). Diffs come from the generic naive diff of the base class.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping

from .. import mountutil
from ..driver import Driver
from ..errors import DriverNotSupported, InvalidOption, LayerNotFound
from ..units import human_size, parse_bool, parse_size
from . import dmthinpool, fsutil
from .deviceset import BASE, DeviceSet, Settings
from .pool import ThinPool
from .reflinkpool import ReflinkPool

BACKENDS = ("dmthin", "reflink")

DEFAULTS = {
    "dm.basesize": 10 << 30,
    "dm.loopdatasize": 100 << 30,
    "dm.loopmetadatasize": 2 << 30,
    "dm.min_free_space": 10,
    "dm.mountopt": "",
    "dm.mkfsarg": (),
    "dm.use_deferred_deletion": False,
    "dm.use_deferred_removal": False,
}


def _percent(text: str) -> int:
    value = text.strip().removesuffix("%")
    if not value.isdigit() or int(value) >= 100:
        raise InvalidOption(f"dm.min_free_space: {text!r} is not a percentage from 0% to 99%")
    return int(value)


def _choice(key: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise InvalidOption(f"{key}: {text!r} is not one of {', '.join(choices)}")
        return text

    return parse


class DevmapperDriver(Driver):
    name = "devmapper"
    supports_quota = True
    option_parsers = {
        "dm.basesize": lambda v: parse_size(v, what="dm.basesize"),
        "dm.loopdatasize": lambda v: parse_size(v, what="dm.loopdatasize"),
        "dm.loopmetadatasize": lambda v: parse_size(v, what="dm.loopmetadatasize"),
        "dm.fs": _choice("dm.fs", fsutil.SUPPORTED_FS),
        "dm.mkfsarg": lambda v: tuple(shlex.split(v)),
        "dm.mountopt": str,
        "dm.thinpooldev": str,
        "dm.min_free_space": _percent,
        "dm.use_deferred_deletion": lambda v: parse_bool(v, what="dm.use_deferred_deletion"),
        "dm.use_deferred_removal": lambda v: parse_bool(v, what="dm.use_deferred_removal"),
        "dm.backend": _choice("dm.backend", BACKENDS),
    }

    def __init__(self, home: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        opts = {**DEFAULTS, **self.options}
        self.fs: str = opts.get("dm.fs") or fsutil.default_fs()
        self.opts = opts
        self.backend = self._choose_backend(opts)
        os.makedirs(home, exist_ok=True)
        self.pool = self._make_pool(opts)
        try:
            settings = Settings(
                base_size=opts["dm.basesize"],
                base_size_given="dm.basesize" in self.options,
                fs=self.fs,
                fs_given="dm.fs" in self.options,
                mkfs_args=opts["dm.mkfsarg"],
                mount_options=opts["dm.mountopt"],
                min_free_percent=opts["dm.min_free_space"],
                deferred_deletion=opts["dm.use_deferred_deletion"],
            )
            self.devices = DeviceSet(home, self.pool, settings)
        except BaseException:
            self.pool.close()
            raise
        self.fs = self.devices.base_fs

    @staticmethod
    def _choose_backend(opts: Mapping[str, object]) -> str:
        """dm-thin when the kernel has it (or when asked for), else the reflink pool."""
        wanted = opts.get("dm.backend")
        reason = dmthinpool.unavailable_reason() if wanted != "reflink" else None
        if wanted == "dmthin" or opts.get("dm.thinpooldev"):
            if reason is not None:
                raise DriverNotSupported("devmapper", f"dm.backend=dmthin: {reason}")
            return "dmthin"
        if wanted is None and reason is None:
            return "dmthin"
        return "reflink"

    def _pool_name(self) -> str:
        """Docker's naming: docker-<major>:<minor>-<inode of the root>-pool."""
        st = os.stat(self.home)
        return f"strata-{os.major(st.st_dev)}:{os.minor(st.st_dev)}-{st.st_ino}-pool"

    def _make_pool(self, opts: Mapping[str, object]) -> ThinPool:
        if self.backend == "dmthin":
            return dmthinpool.DmThinPool(
                self.home,
                name=self._pool_name(),
                thinpooldev=opts.get("dm.thinpooldev"),  # type: ignore[arg-type]
                data_size=opts["dm.loopdatasize"],  # type: ignore[arg-type]
                metadata_size=opts["dm.loopmetadatasize"],  # type: ignore[arg-type]
                deferred_removal=bool(opts["dm.use_deferred_removal"]),
            )
        return ReflinkPool(
            self.home,
            name=self._pool_name(),
            data_size=opts["dm.loopdatasize"],  # type: ignore[arg-type]
            metadata_dir=os.path.join(self.home, "metadata"),
            metadata_size=opts["dm.loopmetadatasize"],  # type: ignore[arg-type]
        )

    # -- hooks -------------------------------------------------------------------------

    def _mountpoint(self, layer_id: str) -> str:
        return os.path.join(self.devices.mnt_dir, layer_id)

    def _exists(self, id: str) -> bool:
        return self.devices.exists(id)

    def _create(self, id: str, parent: str | None, *, size: int | None, read_write: bool) -> None:
        if parent is None:
            self.devices.create(id, None, size, None)
            return
        # Hold the parent's layer lock so it is not mounted or unmounted mid-snapshot; a
        # mounted parent is frozen for the snapshot (see ReflinkPool.create_snap).
        with self._layer_lock(parent):
            mounted = self._mountpoint(parent) if self.refcount(parent) else None
            self.devices.create(id, parent, size, mounted)

    def _remove(self, id: str) -> None:
        self.devices.delete(id)
        try:
            os.rmdir(self._mountpoint(id))
        except (FileNotFoundError, OSError):
            pass  # never mounted, or still busy under a lazy unmount

    def _mount(self, id: str, mount_label: str) -> str:
        info = self.devices.get(id)
        mnt = self._mountpoint(id)
        try:
            os.mkdir(mnt)
        except FileExistsError:
            pass
        flags, data = self.devices.mount_options(info.fs)
        if mount_label:  # SELinux, as Docker's label.FormatMountLabel
            data = f'{data},context="{mount_label}"' if data else f'context="{mount_label}"'
        for attempt in (1, 2):
            active = self.pool.activate(info.device_id, info.size)
            try:
                mountutil.mount(active.path, mnt, info.fs, flags, data or None)
            except OSError:
                active.release()
                self.pool.deactivate(info.device_id)
                if attempt == 1 and getattr(active, "shared", False):
                    continue  # the shared loop device went away meanwhile: attach a new one
                raise
            except BaseException:
                active.release()
                self.pool.deactivate(info.device_id)
                raise
            active.release()
            break
        rootfs = os.path.join(mnt, "rootfs")
        if not os.path.isdir(rootfs):  # a device made outside strata: as Docker, create it
            os.mkdir(rootfs, 0o755)
        return rootfs

    def _unmount(self, id: str) -> None:
        # syncfs first: umount flushes only when it ends the filesystem, and a copy of this
        # mount in another mount namespace (any container started meanwhile) keeps it
        # alive; the device file must hold the data now, or a later snapshot would miss it.
        fsutil.syncfs(self._mountpoint(id))
        mountutil.umount_retry(self._mountpoint(id))
        self.pool.deactivate(self.devices.get(id).device_id)

    def _cleanup(self) -> None:
        try:
            self.devices.close()
        finally:
            self.pool.close()

    # -- information -------------------------------------------------------------------

    def status(self) -> list[tuple[str, str]]:
        usage = self.pool.usage()
        base = self.devices.get(BASE)
        yes = {True: "true", False: "false"}
        return [
            ("Backend", self.backend),
            ("Pool Name", self.pool.name),
            ("Pool Blocksize", human_size(usage.block_size)),
            ("Base Device Size", human_size(base.size)),
            ("Backing Filesystem", self.fs),
            ("Data file", self.pool.data_file),
            ("Metadata file", self.pool.metadata_file),
            ("Data Space Used", human_size(usage.data_used)),
            ("Data Space Total", human_size(usage.data_total)),
            ("Data Space Available", human_size(usage.data_available)),
            ("Metadata Space Used", human_size(usage.metadata_used)),
            ("Metadata Space Total", human_size(usage.metadata_total)),
            ("Metadata Space Available", human_size(usage.metadata_available)),
            ("Thin Pool Minimum Free Space", human_size(usage.data_total * self.opts["dm.min_free_space"] // 100)),
            ("Deferred Removal Enabled", yes[self.opts["dm.use_deferred_removal"]]),
            ("Deferred Deletion Enabled", yes[self.opts["dm.use_deferred_deletion"]]),
            ("Deferred Deleted Device Count", str(len(self.devices.deferred()))),
            ("Library Version", self.pool.library_version),
        ]

    def metadata(self, id: str) -> dict[str, str]:
        if not self.exists(id):
            raise LayerNotFound(id)
        info = self.devices.get(id)
        facts = {
            "DeviceId": str(info.device_id),
            "DeviceSize": str(info.size),
            "DeviceName": f"{self.pool.name.removesuffix('-pool')}-{info.device_id}",
            "Backend": self.backend,
            "Filesystem": info.fs,
            "MountPoint": self._mountpoint(id),
        }
        if isinstance(self.pool, ReflinkPool):
            facts["DeviceFile"] = self.pool.path(info.device_id)
        return facts

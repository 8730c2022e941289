"""The devmapper driver: every layer is a thin device holding a real filesystem.

Layer `<id>` is a thin snapshot of its parent's device (of the base device when it has
no parent), mounted at `devmapper/mnt/<id>` with its files under `rootfs/`, as in
Docker. The pool behind the devices is dm-thin when the kernel has device-mapper, else
the reflink pool (see pool.py). Diffs come from the generic naive diff of the base class.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from .. import mountutil
from ..driver import Driver
from ..errors import DriverNotSupported, InvalidOption, LayerNotFound
from ..options import DriverOptions, option
from ..units import bool_parser, choice, human_size, size_parser
from . import dmthinpool, fsutil
from .deviceset import BASE, DeviceSet, Settings
from .pool import ThinPool
from .reflinkpool import ReflinkPool

log = logging.getLogger(__name__)

BACKENDS = ("dmthin", "reflink")


def _percent(text: str) -> int:
    value = text.strip().removesuffix("%")
    if not value.isdigit() or int(value) >= 100:
        raise InvalidOption(f"dm.min_free_space: {text!r} is not a percentage from 0% to 99%")
    return int(value)


@dataclass(frozen=True)
class DevmapperOptions(DriverOptions):
    """The dm.* options, with Docker's defaults."""

    basesize: int = option("dm.basesize", size_parser("dm.basesize"), 10 << 30)
    loopdatasize: int = option("dm.loopdatasize", size_parser("dm.loopdatasize"), 100 << 30)
    loopmetadatasize: int = option("dm.loopmetadatasize", size_parser("dm.loopmetadatasize"), 2 << 30)
    fs: str | None = option("dm.fs", choice("dm.fs", fsutil.SUPPORTED_FS), None)
    mkfsarg: tuple[str, ...] = option("dm.mkfsarg", lambda v: tuple(shlex.split(v)), ())
    mountopt: str = option("dm.mountopt", str, "")
    thinpooldev: str | None = option("dm.thinpooldev", str, None)
    min_free_space: int = option("dm.min_free_space", _percent, 10)
    use_deferred_deletion: bool = option("dm.use_deferred_deletion", bool_parser("dm.use_deferred_deletion"), False)
    use_deferred_removal: bool = option("dm.use_deferred_removal", bool_parser("dm.use_deferred_removal"), False)
    backend: str | None = option("dm.backend", choice("dm.backend", BACKENDS), None)


class DevmapperDriver(Driver):
    name = "devmapper"
    supports_quota = True
    options_type = DevmapperOptions
    options: DevmapperOptions

    def __init__(self, home: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        opts = self.options
        self.fs: str = opts.fs or fsutil.default_fs()
        self.backend = self._choose_backend(opts)
        os.makedirs(home, exist_ok=True)
        self.pool = self._make_pool(opts)
        try:
            settings = Settings(
                base_size=opts.basesize,
                base_size_given="dm.basesize" in opts.given,
                fs=self.fs,
                fs_given="dm.fs" in opts.given,
                mkfs_args=opts.mkfsarg,
                mount_options=opts.mountopt,
                min_free_percent=opts.min_free_space,
                deferred_deletion=opts.use_deferred_deletion,
            )
            self.devices = DeviceSet(home, self.pool, settings, frozenset(self.disowned_mounts()))
        except BaseException:
            self.pool.close()
            raise
        self.fs = self.devices.base_fs

    @staticmethod
    def _choose_backend(opts: DevmapperOptions) -> str:
        """dm-thin when the kernel has it (or when asked for), else the reflink pool (which
        refuses the dm-thin-only dm.use_deferred_removal rather than ignore it)."""
        wanted = opts.backend
        reason = dmthinpool.unavailable_reason() if wanted != "reflink" else None
        if wanted == "dmthin" or opts.thinpooldev:
            if reason is not None:
                raise DriverNotSupported("devmapper", f"dm.backend=dmthin: {reason}")
            return "dmthin"
        if wanted is None and reason is None:
            return "dmthin"
        if opts.use_deferred_removal:  # the reflink pool's devices are files: nothing to defer
            raise InvalidOption("dm.use_deferred_removal=true needs the dmthin backend (device-mapper devices); "
                                "the reflink pool has no device to remove")
        return "reflink"

    def _pool_name(self) -> str:
        """Docker's naming: docker-<major>:<minor>-<inode of the root>-pool."""
        st = os.stat(self.home)
        return f"strata-{os.major(st.st_dev)}:{os.minor(st.st_dev)}-{st.st_ino}-pool"

    def _make_pool(self, opts: DevmapperOptions) -> ThinPool:
        if self.backend == "dmthin":
            return dmthinpool.DmThinPool(
                self.home,
                name=self._pool_name(),
                thinpooldev=opts.thinpooldev,
                data_size=opts.loopdatasize,
                metadata_size=opts.loopmetadatasize,
                deferred_removal=opts.use_deferred_removal,
            )
        return ReflinkPool(
            self.home,
            name=self._pool_name(),
            data_size=opts.loopdatasize,
            metadata_dir=os.path.join(self.home, "metadata"),
            metadata_size=opts.loopmetadatasize,
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
                    log.debug("devmapper: the shared loop device of %s went away; attaching a new one", id)
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

    def disown_unsupported(self) -> str | None:
        if self.pool.closes_devices:
            return (f"this process set up the {self.backend} pool and tears it down when it ends; "
                    "use a long-lived engine (strata daemon) for detached containers")
        return None

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
            ("Thin Pool Minimum Free Space", human_size(usage.data_total * self.options.min_free_space // 100)),
            ("Deferred Removal Enabled", yes[self.options.use_deferred_removal]),
            ("Deferred Deletion Enabled", yes[self.options.use_deferred_deletion]),
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

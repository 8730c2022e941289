"""A driver under test and the filesystem beneath it, set up and torn down as one.

With `--backing loop` (the default) every driver gets a fresh sparse image of the kind it
registered for (btrfs for btrfs, ext4/xfs for the rest), or of the filesystem its cell
names (`--backing-fs`), all in one scratch directory so they share the same disk. With
`--backing PATH` the driver's root is a new directory under PATH. `close()` always
unmounts everything, whatever state `open()` reached.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import graphdrivers
from graphdrivers import fsmagic, mountutil
from graphdrivers.backing import MKFS, LoopFilesystem

from . import variants

LOOP_SIZE = 16 << 30  # sparse: costs only what the workload writes


def mount_facts(path: str) -> dict[str, str]:
    """Mount point, type, source and options of the filesystem holding `path`."""
    path = os.path.realpath(path)
    best: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            point = fields[4].replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(
                best.get("mountpoint", "")
            ):
                best = {
                    "mountpoint": point,
                    "fstype": rfields[0],
                    "source": rfields[1] if len(rfields) > 1 else "",
                    "mount_options": fields[5],
                    "super_options": rfields[2] if len(rfields) > 2 else "",
                }
    return best


def cells(drivers: list[str], backing_fs: list[str]) -> list[tuple[str, str | None]]:
    """The (driver, backing filesystem) pairs a run measures: every driver (or variant,
    `aufs[...]`) on every filesystem of `backing_fs`, or, when that is empty, each on the one
    it registered for (None for a name no driver registered: opening it says why). Whether a driver runs on
    a pair's filesystem is the driver's to say when it starts."""
    if backing_fs:
        return [(name, fs) for name in drivers for fs in backing_fs]
    return [(name, _registered_fs(variants.parse(name).name)) for name in drivers]


def _registered_fs(name: str) -> str | None:
    try:
        return graphdrivers.registration(name).backing_fs
    except graphdrivers.errors.DriverError:
        return None


def backend_of(status: list[tuple[str, str]], default: str) -> str:
    """The backend a driver reports in status() ("Backend" row), else the driver name."""
    for key, value in status:
        if key.strip().lower() == "backend":
            return value
    return default


class Sandbox:
    def __init__(
        self,
        name: str,
        scratch: str,
        backing: str,
        run_id: str,
        loop_size: int = LOOP_SIZE,
        options: dict[str, str] | None = None,
        fstype: str | None = None,
        slug: str | None = None,
    ) -> None:
        self.name = name
        self.slug = slug or name  # names its directories: a driver's variants each get their own
        self.fstype = fstype  # the loop image's filesystem; None: the driver's registered one
        self.options = options or {}
        self.scratch = scratch
        self.backing = backing
        self.run_id = run_id
        self.loop_size = loop_size
        self.fs: LoopFilesystem | None = None
        self.root = ""
        self.driver: graphdrivers.Driver | None = None
        self.backing_fs = ""

    def open(self) -> graphdrivers.Driver:
        reg = graphdrivers.registration(self.name)
        try:
            if self.backing == "loop":
                fstype = self.fstype or reg.backing_fs
                self.fs = LoopFilesystem(os.path.join(self.scratch, f"{self.slug}-{fstype}"), fstype, self.loop_size)
                self.fs.create()
                self.root = os.path.join(self.fs.mountpoint, "root")
                os.mkdir(self.root)
                self.backing_fs = fstype
            else:
                self.root = os.path.join(os.path.abspath(self.backing), f"strata-bench-{self.run_id}", self.slug)
                os.makedirs(self.root)
                self.backing_fs = fsmagic.fs_name(self.root)
            self.driver = graphdrivers.get_driver(self.name, root=self.root, options=self.options)
        except BaseException:
            self.close()
            raise
        return self.driver

    @property
    def mountpoint(self) -> str:
        return self.fs.mountpoint if self.fs else mount_facts(self.root)["mountpoint"]

    def facts(self) -> dict[str, object]:
        facts: dict[str, object] = {"kind": "loop" if self.fs else "path", "root": self.root, "fstype": self.backing_fs}
        if self.root and os.path.exists(self.root):
            facts.update(mount_facts(self.root))
        if self.fs:
            facts.update(image=self.fs.image, image_size=self.fs.size, mkfs=[*MKFS[self.fs.fstype], *self.fs.mkfs_args])
        return facts

    def close(self) -> None:
        """Unmount and delete everything, even after a failed or interrupted open()."""
        try:
            if self.driver is not None:
                self.driver.cleanup()
        finally:
            self.driver = None
            if self.fs is not None:
                self.fs.destroy()
                self.fs = None
            elif self.root and os.path.isdir(self.root):
                for point in mountutil.mounts_under(self.root):
                    mountutil.umount_retry(point)
                shutil.rmtree(self.root, ignore_errors=True)
                with contextlib.suppress(OSError):  # the run's directory, once its last driver is gone
                    os.rmdir(os.path.dirname(self.root))

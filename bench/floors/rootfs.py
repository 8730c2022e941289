"""The rootfs floors: per driver kind, the primitive assembling a container's rootfs cannot beat.

Each kind prepares its data untimed (per depth, the same layer tars as the scenario's
image) and then, per repetition, times only the primitive on a fresh target:

- overlay2: overlay mount(2) of the unpacked lower dirs (+ listing the root), umount(2).
- btrfs: the snapshot ioctl of a subvolume holding the unpacked image.
- vfs: a copy of the unpacked image whose data moves by copy_file_range(2).
- devmapper (reflink pool): one FICLONE of the image's own device file (a sparse file of
  the device's size, whose extents the image's layers wrote) into a new file on the same
  filesystem, then its unlink: a snapshot in that pool is that clone, nothing less.
- aufs (FUSE union): a FUSE mount(2) with the INIT handshake answered in this process,
  then umount(2): what any FUSE mount costs before a server process exists or a branch
  is indexed (the driver forks its server and builds the union's index on top).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
from collections.abc import Iterator

from graphdrivers import mountutil

from ..layers import Layers
from ..scenarios import Context, Phase, Repetition, clock, phased, phases
from ..scenarios.rootfs import build_image, image_layers
from ..workloads import Layer
from .trees import merged, unpack

log = logging.getLogger(__name__)

SCENARIO = "rootfs"


class NoFloor(Exception):
    """This driver's rootfs has no floor here; the message says why (a warning, no rows)."""


class _Overlay:
    backend = "overlay mount(2)+umount(2)"

    def __init__(self, ctx: Context, stack: list[Layer], directory: str, image: Layers) -> None:
        self.lowers = [os.path.join(directory, f"l{i}") for i in range(len(stack))]
        for layer, lower in zip(stack, self.lowers, strict=True):
            unpack(layer, lower)

    def once(self, top: str) -> dict[str, float]:
        upper, work, merged_dir = (os.path.join(top, d) for d in ("upper", "work", "merged"))
        t0 = clock()
        for d in (upper, work, merged_dir):
            os.makedirs(d)
        lowerdir = ":".join(reversed(self.lowers))  # overlayfs lists the top layer first
        mountutil.mount("overlay", merged_dir, "overlay", 0, f"lowerdir={lowerdir},upperdir={upper},workdir={work}")
        os.listdir(merged_dir)
        t1 = clock()
        mountutil.umount_retry(merged_dir)
        t2 = clock()
        shutil.rmtree(top)
        return {"create_read_write+get": t1 - t0, "put": t2 - t1}


class _Tree:
    """A floor whose container layer is a whole new tree made from the unpacked image."""

    backend = ""
    tree = ""

    def make(self, top: str) -> None:
        raise NotImplementedError

    def drop(self, top: str) -> None:
        raise NotImplementedError

    def once(self, top: str) -> dict[str, float]:
        t0 = clock()
        self.make(top)
        t1 = clock()
        self.drop(top)
        return {"create_read_write": t1 - t0}


class _Snapshot(_Tree):
    backend = "btrfs snapshot ioctl"

    def __init__(self, ctx: Context, stack: list[Layer], directory: str, image: Layers) -> None:
        import btrfsutil

        self.tree = os.path.join(directory, "tree")
        os.makedirs(directory, exist_ok=True)
        btrfsutil.create_subvolume(self.tree)
        merged(stack, self.tree)

    def make(self, top: str) -> None:
        import btrfsutil

        btrfsutil.create_snapshot(self.tree, top)

    def drop(self, top: str) -> None:
        import btrfsutil

        btrfsutil.delete_subvolume(top)


class _Copy(_Tree):
    backend = "copy_file_range copy"

    def __init__(self, ctx: Context, stack: list[Layer], directory: str, image: Layers) -> None:
        self.tree = merged(stack, os.path.join(directory, "tree"))

    def make(self, top: str) -> None:
        copy_tree(self.tree, top)

    def drop(self, top: str) -> None:
        shutil.rmtree(top)


class _Reflink:
    backend = "FICLONE of the device file + unlink"

    def __init__(self, ctx: Context, stack: list[Layer], directory: str, image: Layers) -> None:
        top = build_image(ctx, image, stack)
        self.device = ctx.driver.metadata(top).get("DeviceFile", "")
        if not self.device:
            raise NoFloor("devmapper: the pool has no device files (dm-thin); no FICLONE floor")
        os.makedirs(directory, exist_ok=True)
        if os.stat(self.device).st_dev != os.stat(directory).st_dev:
            raise NoFloor(f"devmapper: the pool's device files are on their own filesystem image, not on "
                          f"{ctx.sandbox.mountpoint}; no FICLONE floor there")  # fmt: skip

    def once(self, top: str) -> dict[str, float]:
        from graphdrivers.devmapper.reflinkpool import clone

        t0 = clock()
        clone(self.device, top)
        t1 = clock()
        os.unlink(top)
        t2 = clock()
        return {"create_read_write": t1 - t0, "remove": t2 - t1}


class _FuseMount:
    backend = "FUSE mount(2)+INIT+umount(2), in process"

    def __init__(self, ctx: Context, stack: list[Layer], directory: str, image: Layers) -> None:
        pass  # nothing to prepare: the floor mounts no branches

    def once(self, top: str) -> dict[str, float]:
        from graphdrivers.aufs.unionfs.session import bare_mount

        t0 = clock()
        os.makedirs(top)
        t1 = clock()
        session = bare_mount(top, fsname="strata-floor")
        t2 = clock()
        try:
            mountutil.umount(top)
            t3 = clock()
        finally:
            session.close()
        os.rmdir(top)
        return {"get": t2 - t1, "create_read_write+get": t2 - t0, "put": t3 - t2}


KINDS = {"overlay2": _Overlay, "btrfs": _Snapshot, "vfs": _Copy, "devmapper": _Reflink, "aufs": _FuseMount}


def copy_tree(src: str, dst: str) -> None:
    """A copy of `src` whose file data moves by copy_file_range(2) (vfs's create_read_write)."""
    for root, dirs, files in os.walk(src):
        target = os.path.join(dst, os.path.relpath(root, src))
        os.makedirs(target, exist_ok=True)
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(root, d)))]:
            path, out = os.path.join(root, name), os.path.join(target, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), out)
                continue
            with open(path, "rb") as fin, open(out, "wb") as fout:
                left = os.fstat(fin.fileno()).st_size
                while left > 0:
                    n = os.copy_file_range(fin.fileno(), fout.fileno(), left)
                    if n == 0:
                        break
                    left -= n


def rootfs(ctx: Context) -> Iterator[None]:
    """The rootfs floor of the driver's kind, per depth."""
    kind = KINDS.get(ctx.driver.name)
    if kind is None:
        return
    base = os.path.join(ctx.sandbox.mountpoint, "floor-rootfs")
    serial = itertools.count()  # targets: warm-ups and re-warms reuse repetition indices
    try:
        with Layers(ctx.driver, "flr") as image:
            floors: dict[int, tuple[object, dict[str, int]]] = {}
            for depth in ctx.config.depths:
                stack = image_layers(ctx, depth)
                common = {"depth": depth, "files": sum(la.files for la in stack),
                          "bytes": sum(la.bytes for la in stack)}  # fmt: skip
                try:
                    floors[depth] = kind(ctx, stack, os.path.join(base, f"d{depth}"), image), common
                except NoFloor as exc:
                    ctx.warnings.append(f"floor: {exc}")
                    return

            def once(phase: Phase, rep: Repetition) -> None:
                floor, common = floors[phase[1]]  # type: ignore[index]
                top = os.path.join(base, f"c{next(serial)}")
                rep.start()
                seconds = floor.once(top)  # type: ignore[attr-defined]
                if rep.measured:
                    for step, s in seconds.items():
                        ctx.row(SCENARIO, step, seconds=s, **common, **rep.columns())

            # every depth in one phased run, as strata's rootfs scenario visits them: rounds
            # in a drawn order, and no depth's repetitions all before another's
            yield from phased(ctx, SCENARIO, phases(ctx.config, tuple(ctx.config.depths)), once)
    finally:
        if os.path.isdir(base):
            for point in mountutil.mounts_under(base):
                mountutil.umount_retry(point)
            _remove(base, kind is _Snapshot)


def _remove(path: str, subvolumes: bool) -> None:
    """Delete a floor directory (on btrfs, the subvolumes in it first)."""
    if subvolumes and os.path.isdir(path):
        import btrfsutil

        for root, dirs, _ in os.walk(path, topdown=False):
            for d in dirs:
                with contextlib.suppress(btrfsutil.BtrfsUtilError):
                    if btrfsutil.is_subvolume(os.path.join(root, d)):
                        btrfsutil.delete_subvolume(os.path.join(root, d))
    shutil.rmtree(path, ignore_errors=True)

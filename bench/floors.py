"""Floors: the kernel or runtime primitive each step cannot beat, on the same data.

`--floors` (the default) measures, beside every driver, what its step costs when nothing
but the primitive runs, on the driver's own backing filesystem and the same layer tars
(unpacked untimed into plain directories):

- rootfs `create_read_write+get`, `put`: overlay2: overlay mount(2) of the same lower
  dirs, umount(2). `create_read_write`: btrfs: the snapshot ioctl (btrfsutil); vfs: a
  `copy_file_range` copy of the tree.
- layer-create `apply_diff` and `chain:apply_diff`, pull `apply`: `tar -x` of the layer tar.
- exec `true`, `run_rm_true`: `runc run` / `crun run` of a prepared bundle (strata's own
  OCI config) over the unpacked image.

Rows have system `floor`; the summary divides each median by its floor's (`x floor`).
aufs and devmapper have no floor row: no primitive does their step alone here.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator

from graphdrivers import mountutil

from .scenarios import Context, Phase, Repetition, clock, phased, phases
from .scenarios.exec import _stack
from .scenarios.pull import pull_rounds
from .scenarios.rootfs import image_layers
from .workloads import Layer

log = logging.getLogger(__name__)

RUNTIMES = ("runc", "crun")


def _untar(layer: Layer, dest: str) -> float:
    """`tar -x` of a layer tar into `dest` (whiteouts stay as files: a floor, not a driver)."""
    os.makedirs(dest, exist_ok=True)
    t0 = clock()
    subprocess.run(["tar", "-xf", layer.path, "-C", dest, "--numeric-owner"], check=True)
    return clock() - t0


def _merged(stack: list[Layer], dest: str) -> str:
    """The stack unpacked into one directory, bottom first (the rootfs a bundle runs in)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(dest)
    for layer in stack:
        _untar(layer, dest)
        with tarfile.open(layer.path) as tar:  # apply the layer's whiteouts, as a driver would
            for member in tar:
                head, _, name = member.name.strip("./").rpartition("/")
                if name.startswith(".wh.") and name != ".wh..wh..opq":
                    for path in (os.path.join(dest, head, name), os.path.join(dest, head, name[4:])):
                        with contextlib.suppress(FileNotFoundError):
                            (shutil.rmtree if os.path.isdir(path) and not os.path.islink(path) else os.remove)(path)
    return dest


def _copy_tree(src: str, dst: str) -> None:
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
    """The rootfs floor of the driver's kind, per depth (nothing for aufs, devmapper)."""
    kind = ctx.driver.name
    if kind not in ("overlay2", "btrfs", "vfs"):
        return
    base = os.path.join(ctx.sandbox.mountpoint, "floor-rootfs")
    serial = itertools.count()  # container dirs: warm-ups and re-warms reuse repetition indices
    try:
        for depth in ctx.config.depths:
            stack = image_layers(ctx, depth)
            common = {"depth": depth, "files": sum(la.files for la in stack), "bytes": sum(la.bytes for la in stack)}
            lowers: list[str] = []
            lower = ""
            if kind == "overlay2":
                lowers = [os.path.join(base, f"d{depth}", f"l{i}") for i in range(len(stack))]
                for layer, lower in zip(stack, lowers, strict=True):
                    _untar(layer, lower)
            else:
                lower = _prepared_tree(kind, stack, os.path.join(base, f"d{depth}", "tree"))

            def once(phase: Phase, rep: Repetition, depth: int = depth, common: dict = common,
                     lowers: list[str] = lowers, lower: str = lower) -> None:
                top = os.path.join(base, f"d{depth}", f"c{next(serial)}")
                rep.start()
                if kind == "overlay2":
                    seconds = _overlay(lowers, top)
                else:
                    seconds = {"create_read_write": _snapshot_or_copy(kind, lower, top)}
                if rep.measured:
                    for step, s in seconds.items():
                        ctx.row("rootfs", step, seconds=s, **common, **rep.columns())

            yield from phased(ctx, "rootfs", phases(ctx.config, (depth,)), once)
            shutil.rmtree(os.path.join(base, f"d{depth}"), ignore_errors=True)
    finally:
        for point in mountutil.mounts_under(base) if os.path.isdir(base) else []:
            mountutil.umount_retry(point)
        if kind == "btrfs" and os.path.isdir(base):
            _delete_subvolumes(base)
        shutil.rmtree(base, ignore_errors=True)


def _overlay(lowers: list[str], top: str) -> dict[str, float]:
    upper, work, merged = (os.path.join(top, d) for d in ("upper", "work", "merged"))
    t0 = clock()
    for d in (upper, work, merged):
        os.makedirs(d)
    lowerdir = ":".join(reversed(lowers))  # overlayfs lists the top layer first
    mountutil.mount("overlay", merged, "overlay", 0, f"lowerdir={lowerdir},upperdir={upper},workdir={work}")
    os.listdir(merged)
    t1 = clock()
    mountutil.umount_retry(merged)
    t2 = clock()
    shutil.rmtree(top)
    return {"create_read_write+get": t1 - t0, "put": t2 - t1}


def _prepared_tree(kind: str, stack: list[Layer], path: str) -> str:
    if kind == "btrfs":
        import btrfsutil

        os.makedirs(os.path.dirname(path), exist_ok=True)
        btrfsutil.create_subvolume(path)
        tmp = _merged(stack, path + ".tmp")
        for name in os.listdir(tmp):
            os.rename(os.path.join(tmp, name), os.path.join(path, name))
        os.rmdir(tmp)
        return path
    return _merged(stack, path)


def _snapshot_or_copy(kind: str, lower: str, top: str) -> float:
    if kind == "btrfs":
        import btrfsutil

        t0 = clock()
        btrfsutil.create_snapshot(lower, top)
        t1 = clock()
        btrfsutil.delete_subvolume(top)
        return t1 - t0
    t0 = clock()
    _copy_tree(lower, top)
    t1 = clock()
    shutil.rmtree(top)
    return t1 - t0


def _delete_subvolumes(base: str) -> None:
    import btrfsutil

    for root, dirs, _ in os.walk(base, topdown=False):
        for d in dirs:
            path = os.path.join(root, d)
            with contextlib.suppress(Exception):
                if btrfsutil.is_subvolume(path):
                    btrfsutil.delete_subvolume(path)


def layer_create(ctx: Context) -> Iterator[None]:
    """`tar -x` of each workload layer into its own fresh directory: apply_diff's floor."""
    base = os.path.join(ctx.sandbox.mountpoint, "floor-untar")
    wl = ctx.workload
    try:
        def once(phase: Phase, rep: Repetition) -> None:
            rep.start()
            total = 0.0
            for i, layer in enumerate(wl.layers):
                seconds = _untar(layer, os.path.join(base, "r", f"l{i}"))
                total += seconds
                if rep.measured:
                    ctx.row("layer-create", "apply_diff", seconds=seconds, layer=i, depth=i + 1, files=layer.files,
                            bytes=layer.bytes, **rep.columns())  # fmt: skip
            if rep.measured:
                ctx.row("layer-create", "chain:apply_diff", seconds=total, layer=-1, depth=len(wl.layers),
                        files=wl.files, bytes=wl.bytes, **rep.columns())  # fmt: skip
            shutil.rmtree(base, ignore_errors=True)

        yield from phased(ctx, "layer-create", phases(ctx.config), once)
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _Bundle:
    """A prepared OCI bundle (strata's own config for `argv`) over a plain rootfs directory,
    run straight by a runtime: no engine, no union, no monitor."""

    def __init__(self, runtime: str, rootfs: str, directory: str) -> None:
        from engine.execdrivers.base import ProcessSpec
        from engine.execdrivers.oci import OciDriver
        from engine.execdrivers.ocispec import oci_spec, process_env
        from engine.execdrivers.users import resolve

        self.oci = OciDriver(os.path.join(directory, "state"), {"exec.runtime": runtime})
        self.runtime = runtime
        self.directory = directory
        self.oci_spec, self.process_env, self.resolve, self.spec = oci_spec, process_env, resolve, ProcessSpec
        self.rootfs = rootfs

    def run(self, name: str, argv: list[str]) -> float:
        import json

        spec = self.spec(rootfs=self.rootfs, args=argv)
        user = self.resolve(self.rootfs, "")
        bundle = os.path.join(self.directory, name)
        os.makedirs(bundle, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(self.oci_spec(spec, user, self.process_env(spec, user)), f)
        cmd = self.oci.runtime_command("run", "--bundle", bundle, name)
        preexec = self.oci.enter_runtime_namespace if self.oci.hide_cgroup2 else None
        t0 = clock()
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, preexec_fn=preexec)
        t1 = clock()
        shutil.rmtree(bundle, ignore_errors=True)
        if done.returncode != 0:
            raise RuntimeError(f"{self.runtime} run {' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
        return t1 - t0


def exec_(ctx: Context) -> Iterator[None]:
    """`runc run` / `crun run` of /bin/true in a bundle over the unpacked exec image: the
    floor of `true` (start until exit) and of `run_rm_true` (`run` creates, starts, deletes)."""
    stack = _stack(ctx)
    base = os.path.join(ctx.sandbox.mountpoint, "floor-exec")
    common = {"depth": len(stack), "files": sum(la.files for la in stack), "bytes": sum(la.bytes for la in stack)}
    try:
        rootfs = _merged(stack, os.path.join(base, "rootfs"))
        bundles = []
        for runtime in RUNTIMES:
            if shutil.which(runtime) is None:
                ctx.warnings.append(f"floor: {runtime} not found; no {runtime} floor")
                continue
            bundles.append(_Bundle(runtime, rootfs, os.path.join(base, runtime)))
        serial = itertools.count()

        def once(phase: Phase, rep: Repetition) -> None:
            rep.start()
            for bundle in bundles:
                for step in ("true", "run_rm_true"):
                    seconds = bundle.run(f"floor-{os.getpid()}-{next(serial)}", ["/bin/true"])
                    if rep.measured:  # beside strata's oci rows; the runtime tells the two floors apart
                        row = ctx.row("exec", step, seconds=seconds, execdriver="oci", runtime=bundle.runtime,
                                      **common, **rep.columns())  # fmt: skip
                        row.backend = f"{bundle.runtime} run"

        yield from phased(ctx, "exec", phases(ctx.config), once)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def pull(ctx: Context) -> Iterator[None]:
    """`tar -x` of each pulled (workload) layer: the floor of the pull's per-layer apply."""
    layers = ctx.workload.layers
    base = os.path.join(ctx.sandbox.mountpoint, "floor-pull")
    try:
        for index, columns in pull_rounds(ctx):
            for i, layer in enumerate(layers):
                seconds = _untar(layer, os.path.join(base, f"l{i}"))
                if index >= 0:
                    ctx.row("pull", "apply", seconds=seconds, layer=i, depth=i + 1, files=layer.files,
                            bytes=layer.bytes, **columns)  # fmt: skip
            shutil.rmtree(base, ignore_errors=True)
            yield
    finally:
        shutil.rmtree(base, ignore_errors=True)


def backend(scenario: str, driver: str) -> str:
    """What the floor rows of `scenario` on `driver` measured (their `backend` column)."""
    if scenario == "rootfs":
        return {"overlay2": "overlay mount(2)+umount(2)", "btrfs": "btrfs snapshot ioctl",
                "vfs": "copy_file_range copy"}.get(driver, "")  # fmt: skip
    return {"layer-create": "tar -x", "pull": "tar -x"}.get(scenario, "")  # exec: per runtime, "runc run"


FLOORS = {"rootfs": rootfs, "layer-create": layer_create, "exec": exec_, "pull": pull}

"""exec: process startup in a container rootfs, and first-touch costs of the driver.

Driver level (no execdriver, measured from the host through a container layer's mount):
the first read of a bottom-layer data file and a re-read of it through the same mount,
the first write (copy-up) to the big lower file and the writeback of what it dirtied, the
same write made durable with fsync, and the space that small writes into the big lower
file take (copy-on-write granularity). Per execdriver: end-to-end start (`run_rm_true`:
layer, mount, `/bin/true`, unmount, remove), and on a container layer of its own: start
request until `/bin/true` exits, until `echo`'s first byte arrives, until a `dd` that
reads the bottom-layer data file exits (then the same `dd` again), and until one that
writes one byte into the big lower file exits.

The image is a one-file data layer at the bottom + busybox + the workload's layers + a
layer holding the big file. Every measurement gets a fresh container layer, so each first
touch really is the first (and a write never waits behind I/O a read left in flight); a
cold repetition drops the page cache after the container layer is created and mounted
(creating it copies files on vfs) and before the measured step, and the bottom data file
is read by nothing but the read steps. Each read row records how much of the file was in
the page cache right before it (`cached_bytes`): whether a new container's first read is
served from memory depends on the driver sharing the image's page cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import graphdrivers

from .. import execadapter
from ..layers import Layers
from ..pagecache import cached_bytes
from ..space import settle, syncfs, used_bytes
from ..workloads import BOTTOM_DATA, big_lower_layer, bottom_data_layer, busybox_layer
from . import Context, Phase, Repetition, clock, phased, phases
from .rootfs import build_image

SCENARIO = "exec"
BIG_FILE = "bench/big.bin"
READ_CHUNK = 1 << 20  # the whole bottom data file is read, in 1 MiB requests
READ_ARGV = ("/bin/dd", f"if=/{BOTTOM_DATA}", "of=/dev/null", f"bs={READ_CHUNK}")  # to the end of the file
WRITE_ARGV = ("/bin/dd", "if=/dev/zero", f"of=/{BIG_FILE}", "bs=1", "count=1", "conv=notrunc")
EXEC_STEPS = (
    "run_rm_true",
    "run_rm_true:driver",
    "true",
    "echo_first_byte",
    "read_bottom_in_container",
    "reread_bottom_in_container",
    "write_copyup_in_container",
)


def _stack(ctx: Context) -> list:
    base = [] if ctx.workload.name == "busybox" else [busybox_layer(ctx.workdir, "exec-busybox")]
    return [
        bottom_data_layer(ctx.workdir, ctx.config.read_bytes),
        *base,
        *ctx.workload.layers,
        big_lower_layer(ctx.workdir, ctx.config.copyup_bytes),
    ]


def _flush(path: str, backing: str) -> None:
    """Write back the container's filesystem, then the backing filesystem under it (for
    devmapper the first only reaches the loop image; for FUSE the second holds the data)."""
    syncfs(path)
    syncfs(backing)


def _read_all(path: str, size: int) -> float:
    """Open and read all of the bottom data file (`size` bytes) in 1 MiB requests."""
    buffer, done = bytearray(READ_CHUNK), 0
    t0 = clock()
    with open(os.path.join(path, BOTTOM_DATA), "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            done += n
    t1 = clock()
    if done != size:
        raise RuntimeError(f"read {done} bytes of {BOTTOM_DATA}, expected {size}")
    return t1 - t0


def _first_write(path: str, backing: str) -> tuple[float, float]:
    """(first write to the big lower file, writeback of what that write dirtied)."""
    t0 = clock()
    with open(os.path.join(path, BIG_FILE), "r+b") as f:
        f.write(b"\0")
    t1 = clock()
    _flush(path, backing)
    return t1 - t0, clock() - t1


def _durable_copyup(path: str) -> float:
    """Open the big lower file, write one byte and fsync it: the copy-up made durable."""
    t0 = clock()
    with open(os.path.join(path, BIG_FILE), "r+b") as f:
        f.write(b"\0")
        f.flush()
        os.fsync(f.fileno())
    return clock() - t0


def _small_writes(path: str, writes: int, stride: int) -> float:
    """`writes` one-byte writes, `stride` bytes apart, into the big lower file."""
    t0 = clock()
    fd = os.open(os.path.join(path, BIG_FILE), os.O_RDWR)
    try:
        for i in range(writes):
            os.pwrite(fd, b"\1", i * stride)
    finally:
        os.close(fd)
    return clock() - t0


def _timed(runner: execadapter.Runner, rootfs: str, argv: list[str]) -> float:
    """From the start request until the process has exited (successfully)."""
    t0 = clock()
    status = runner.start(rootfs, argv, capture=False).wait()
    t1 = clock()
    if status != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {status} under execdriver {runner.name}")
    return t1 - t0


def _echo_first_byte(runner: execadapter.Runner, rootfs: str) -> float:
    t0 = clock()
    proc = runner.start(rootfs, ["/bin/echo", "x"], capture=True)
    first = proc.read_stdout(1)
    t1 = clock()
    proc.wait()
    if first != b"x":
        raise RuntimeError(f"echo printed {first!r} under execdriver {runner.name}")
    return t1 - t0


def _run_rm_true(driver: graphdrivers.Driver, runner: execadapter.Runner, top: str) -> tuple[float, float]:
    """`docker run --rm IMAGE true` as a user feels it: a new container layer, mounted,
    `/bin/true` started and waited for, unmounted, removed. Returns (the whole, the share
    spent in the driver's create_read_write + get + put + remove)."""
    with Layers(driver, f"exr{runner.name}") as container:
        cid = container.new_id("c")
        t0 = clock()
        driver.create_read_write(cid, top)
        container.created_layer(cid)
        path = driver.get(cid)
        container.got(cid)
        t1 = clock()
        status = runner.start(path, ["/bin/true"], capture=False).wait()
        t2 = clock()
        container.put(cid)
        driver.remove(cid)
        t3 = clock()
        container.removed(cid)
    if status != 0:
        raise RuntimeError(f"/bin/true exited {status} under execdriver {runner.name}")
    return t3 - t0, (t1 - t0) + (t3 - t2)


def _in_container(runner: execadapter.Runner, rootfs: str) -> tuple[dict[str, float], dict[str, int | None]]:
    """The execdriver steps, in order, on one fresh container layer: the first read of the
    bottom data file (then the same read again) and the first write to the big lower file
    happen in the container. Also: bytes of the data file cached before each read."""
    data = os.path.join(rootfs, BOTTOM_DATA)
    times = {"true": _timed(runner, rootfs, ["/bin/true"]), "echo_first_byte": _echo_first_byte(runner, rootfs)}
    cached = {"read_bottom_in_container": cached_bytes(data)}
    times["read_bottom_in_container"] = _timed(runner, rootfs, [*READ_ARGV])
    cached["reread_bottom_in_container"] = cached_bytes(data)
    times["reread_bottom_in_container"] = _timed(runner, rootfs, [*READ_ARGV])
    times["write_copyup_in_container"] = _timed(runner, rootfs, [*WRITE_ARGV])
    return times, cached


def _runners(ctx: Context) -> dict[str, execadapter.Runner]:
    runners = {}
    for name in ctx.config.execdrivers:
        try:
            state = os.path.join(ctx.workdir, f"exec-{ctx.sandbox.slug}-{ctx.sandbox.backing_fs}-{name}")
            runners[name] = execadapter.load(name, state)
            ctx.facts.setdefault("execdrivers", {})[name] = {"available": True, "runtime": runners[name].runtime}
        except execadapter.ExecUnavailable as exc:
            reason = f"unavailable: {exc}"
            ctx.facts.setdefault("execdrivers", {})[name] = {"available": False, "reason": str(exc)}
            ctx.warnings.append(f"{ctx.driver.name}: exec with execdriver {name} {reason}")
            for step in EXEC_STEPS:
                ctx.row(SCENARIO, step, execdriver=name, note=reason, cache=ctx.config.cache_modes[0])
    return runners


def run(ctx: Context) -> Iterator[None]:
    driver, backing, config = ctx.driver, ctx.sandbox.mountpoint, ctx.config
    stack = _stack(ctx)
    files, size = sum(la.files for la in stack), sum(la.bytes for la in stack)
    if config.cow_writes * config.cow_stride > config.copyup_bytes:
        raise ValueError("cow_small_writes would write past the end of the big lower file")
    runners = _runners(ctx)

    def fresh(container: Layers, rep: Repetition) -> tuple[str, dict[str, object]]:
        """A new container layer, mounted and written back, then (cold) the drop: the
        columns of a measurement that starts now."""
        path = container.container(top)
        _flush(path, backing)  # what creating it dirtied is not the measured step's to write back
        rep.start()
        return path, {"depth": len(stack), "files": files, "bytes": size, **rep.columns()}

    def body(phase: Phase, rep: Repetition) -> None:
        with Layers(driver, "exc") as container:
            path, common = fresh(container, rep)
            data = os.path.join(path, BOTTOM_DATA)
            read_cached, read_s = cached_bytes(data), _read_all(path, config.read_bytes)
            reread_cached, reread_s = cached_bytes(data), _read_all(path, config.read_bytes)
        with Layers(driver, "exf") as container:
            path, write_common = fresh(container, rep)
            write_s, writeback_s = _first_write(path, backing)
        with Layers(driver, "exd") as container:
            path, durable_common = fresh(container, rep)
            durable_s = _durable_copyup(path)
        with Layers(driver, "exw") as container:
            path, cow_common = fresh(container, rep)
            settle(backing, ctx.sandbox.backing_fs)
            before = used_bytes(backing)
            cow_s = _small_writes(path, config.cow_writes, config.cow_stride)
            syncfs(path)
            after = used_bytes(backing)
        if rep.measured:
            ctx.row(SCENARIO, "first_read_bottom", seconds=read_s, cached_bytes=read_cached, **common)
            ctx.row(SCENARIO, "reread_bottom", seconds=reread_s, cached_bytes=reread_cached, **common)
            ctx.row(SCENARIO, "first_write_copyup", seconds=write_s, **write_common)
            ctx.row(SCENARIO, "first_write_copyup:writeback", seconds=writeback_s, **write_common)
            ctx.row(SCENARIO, "first_write_copyup_durable", seconds=durable_s, **durable_common)
            cow_common.update(files=1, bytes=config.cow_writes)  # one file, one byte a write
            cow = ctx.row(SCENARIO, "cow_small_writes", seconds=cow_s, **cow_common).with_space(before, after)
            cow.space_per_write = (after - before) / config.cow_writes
        for name, runner in runners.items():
            rep.start()
            total_s, driver_s = _run_rm_true(driver, runner, top)
            run_common = {"depth": len(stack), "files": files, "bytes": size, **rep.columns()}
            with Layers(driver, f"exc{name}") as container:
                path, in_common = fresh(container, rep)
                times, cached = _in_container(runner, path)
            if rep.measured:
                ids = {"execdriver": name, "runtime": runner.runtime}
                ctx.row(SCENARIO, "run_rm_true", seconds=total_s, **ids, **run_common)
                ctx.row(SCENARIO, "run_rm_true:driver", seconds=driver_s, **ids, **run_common)
                for step, seconds in times.items():
                    ctx.row(SCENARIO, step, seconds=seconds, cached_bytes=cached.get(step), **ids, **in_common)

    try:
        with Layers(driver, "ex") as image:
            top = build_image(ctx, image, stack)
            yield from phased(ctx, SCENARIO, phases(config), body)
    finally:
        for runner in runners.values():
            runner.close()

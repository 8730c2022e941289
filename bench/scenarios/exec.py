"""exec: process startup in a container rootfs, and first-touch costs of the driver.

Driver level (no execdriver, measured from the host through the container's mount): the
first read of a bottom-layer file and the first write (copy-up) to a large lower file.
Per execdriver, on a container layer of its own: start request until `/bin/true` exits,
until `echo`'s first byte arrives, and until a `dd` that reads the bottom-layer file, or
writes one byte into the large lower file, exits.

The image is busybox + the workload's layers + a layer holding the large file; every
repetition gets fresh container layers, so each first touch really is the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .. import cache, execadapter
from ..layers import Layers
from ..workloads import big_lower_layer, busybox_layer
from . import Context, clock, repetitions
from .rootfs import build_image

SCENARIO = "exec"
BOTTOM_FILE = "bin/busybox"
BIG_FILE = "bench/big.bin"
READ_SIZE = 64 << 10
READ_ARGV = ("/bin/dd", f"if=/{BOTTOM_FILE}", "of=/dev/null", f"bs={READ_SIZE}", "count=1")
WRITE_ARGV = ("/bin/dd", "if=/dev/zero", f"of=/{BIG_FILE}", "bs=1", "count=1", "conv=notrunc")
EXEC_STEPS = ("true", "echo_first_byte", "read_bottom_in_container", "write_copyup_in_container")


def _stack(ctx: Context) -> list:
    base = [] if ctx.workload.name == "busybox" else [busybox_layer(ctx.workdir, "exec-busybox")]
    return [*base, *ctx.workload.layers, big_lower_layer(ctx.workdir, ctx.config.quick)]


def _first_touch(path: str) -> tuple[float, float]:
    t0 = clock()
    with open(os.path.join(path, BOTTOM_FILE), "rb") as f:
        f.read(READ_SIZE)
    t1 = clock()
    with open(os.path.join(path, BIG_FILE), "r+b") as f:
        f.write(b"\0")
    t2 = clock()
    return t1 - t0, t2 - t1


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


def _in_container(runner: execadapter.Runner, rootfs: str) -> dict[str, float]:
    """The execdriver steps, in order, on one fresh container layer: the first read of a
    bottom-layer file and the first write to the big lower file happen in the container."""
    return {
        "true": _timed(runner, rootfs, ["/bin/true"]),
        "echo_first_byte": _echo_first_byte(runner, rootfs),
        "read_bottom_in_container": _timed(runner, rootfs, [*READ_ARGV]),
        "write_copyup_in_container": _timed(runner, rootfs, [*WRITE_ARGV]),
    }


def _runners(ctx: Context) -> dict[str, execadapter.Runner]:
    runners = {}
    for name in ctx.config.execdrivers:
        try:
            runners[name] = execadapter.load(name, os.path.join(ctx.workdir, f"exec-{ctx.driver.name}-{name}"))
            ctx.facts.setdefault("execdrivers", {})[name] = {"available": True, "runtime": runners[name].runtime}
        except execadapter.ExecUnavailable as exc:
            reason = f"unavailable: {exc}"
            ctx.facts.setdefault("execdrivers", {})[name] = {"available": False, "reason": str(exc)}
            ctx.warnings.append(f"{ctx.driver.name}: exec with execdriver {name} {reason}")
            for step in EXEC_STEPS:
                ctx.row(SCENARIO, step, execdriver=name, note=reason, cache=ctx.config.cache_modes[0])
    return runners


def run(ctx: Context) -> Iterator[None]:
    driver = ctx.driver
    stack = _stack(ctx)
    files, size = sum(la.files for la in stack), sum(la.bytes for la in stack)
    runners = _runners(ctx)
    try:
        with Layers(driver, "ex") as image:
            top = build_image(ctx, image, stack)
            for rep in repetitions(ctx):
                common = {"depth": len(stack), "files": files, "bytes": size, **rep.columns()}
                with Layers(driver, "exc") as container:
                    path = container.container(top)
                    read_s, write_s = _first_touch(path)
                if rep.measured:
                    ctx.row(SCENARIO, "first_read_bottom", seconds=read_s, **common)
                    ctx.row(SCENARIO, "first_write_copyup", seconds=write_s, **common)
                for name, runner in runners.items():
                    if rep.cache == "cold":
                        cache.drop()  # each execdriver's container starts cold too
                    with Layers(driver, f"exc{name}") as container:
                        times = _in_container(runner, container.container(top))
                    if rep.measured:
                        for step, seconds in times.items():
                            ctx.row(SCENARIO, step, seconds=seconds, execdriver=name, runtime=runner.runtime, **common)
                yield  # one repetition done: the runner may run another driver's now
    finally:
        for runner in runners.values():
            runner.close()

"""exec: process startup in a container rootfs, per execdriver, plus the driver's first-touch
costs measured through the container's mount: the first read of a bottom-layer file and
the first write (copy-up) to a large file from a lower layer.

The image is busybox + the workload's layers + a layer holding the large file; every
repetition gets a fresh container layer, so each first touch really is the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .. import execadapter
from ..layers import Layers
from ..workloads import big_lower_layer, busybox_layer
from . import Context, clock, repetitions
from .rootfs import build_image

SCENARIO = "exec"
BOTTOM_FILE = "bin/busybox"
BIG_FILE = "bench/big.bin"
READ_SIZE = 64 << 10


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


def _exec_times(runner: execadapter.Runner, rootfs: str) -> tuple[float, float]:
    t0 = clock()
    status = runner.start(rootfs, ["/bin/true"], capture=False).wait()
    t1 = clock()
    if status != 0:
        raise RuntimeError(f"/bin/true exited {status} under execdriver {runner.name}")
    t2 = clock()
    proc = runner.start(rootfs, ["/bin/echo", "x"], capture=True)
    first = proc.read_stdout(1)
    t3 = clock()
    proc.wait()
    if first != b"x":
        raise RuntimeError(f"echo printed {first!r} under execdriver {runner.name}")
    return t1 - t0, t3 - t2


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
            for step in ("true", "echo_first_byte"):
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
                with Layers(driver, "exc") as container:
                    cid = container.new_id("c")
                    driver.create_read_write(cid, top)
                    container.created_layer(cid)
                    path = driver.get(cid)
                    container.got(cid)
                    read_s, write_s = _first_touch(path)
                    common = {"depth": len(stack), "files": files, "bytes": size, **rep.columns()}
                    if rep.measured:
                        ctx.row(SCENARIO, "first_read_bottom", seconds=read_s, **common)
                        ctx.row(SCENARIO, "first_write_copyup", seconds=write_s, **common)
                    for name, runner in runners.items():
                        true_s, echo_s = _exec_times(runner, path)
                        if rep.measured:
                            ctx.row(SCENARIO, "true", seconds=true_s, execdriver=name, runtime=runner.runtime, **common)
                            ctx.row(
                                SCENARIO,
                                "echo_first_byte",
                                seconds=echo_s,
                                execdriver=name,
                                runtime=runner.runtime,
                                **common,
                            )
                yield  # one repetition done: the runner may run another driver's now
    finally:
        for runner in runners.values():
            runner.close()

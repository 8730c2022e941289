"""rootfs: `create_read_write` + `get` of a container layer over an image of each depth,
until the rootfs is usable (a bottom-layer file is visible), then `put` and `remove`.

The image for depth d is the workload's layers (cut to d) padded with tiny layers up to
d; it is built once per depth (untimed) and every repetition gets a fresh container layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..layers import Layers
from ..workloads import Layer, pad_layer
from . import Context, bottom_file, clock, repetitions

SCENARIO = "rootfs"


def image_layers(ctx: Context, depth: int) -> list[Layer]:
    base = list(ctx.workload.layers[:depth])
    pads = [pad_layer(ctx.workdir, i) for i in range(len(base), depth)]
    return base + pads


def build_image(ctx: Context, layers: Layers, stack: list[Layer]) -> str:
    parent = None
    for i, layer in enumerate(stack):
        layer_id = layers.new_id(f"i{i}")
        ctx.driver.create(layer_id, parent)
        layers.created_layer(layer_id)
        with open(layer.path, "rb") as stream:
            ctx.driver.apply_diff(layer_id, parent, stream)
        parent = layer_id
    assert parent is not None
    return parent


def run(ctx: Context) -> Iterator[None]:
    driver = ctx.driver
    for depth in ctx.config.depths:
        stack = image_layers(ctx, depth)
        probe = bottom_file([layer.path for layer in stack])
        files, size = sum(la.files for la in stack), sum(la.bytes for la in stack)
        with Layers(driver, f"rf{depth}") as image:
            top = build_image(ctx, image, stack)
            for rep in repetitions(ctx, depth):
                with Layers(driver, f"rf{depth}c") as container:
                    cid = container.new_id("c")
                    t0 = clock()
                    driver.create_read_write(cid, top)
                    t1 = clock()
                    container.created_layer(cid)
                    path = driver.get(cid)
                    container.got(cid)
                    os.stat(os.path.join(path, probe))
                    os.listdir(path)
                    t2 = clock()
                    container.put(cid)
                    t3 = clock()
                    driver.remove(cid)
                    t4 = clock()
                    container.removed(cid)
                if rep.measured:
                    common = {"depth": depth, "files": files, "bytes": size, **rep.columns()}
                    ctx.row(SCENARIO, "create_read_write", seconds=t1 - t0, **common)
                    ctx.row(SCENARIO, "get", seconds=t2 - t1, **common)
                    ctx.row(SCENARIO, "create_read_write+get", seconds=t2 - t0, **common)
                    ctx.row(SCENARIO, "put", seconds=t3 - t2, **common)
                    ctx.row(SCENARIO, "remove", seconds=t4 - t3, **common)
                yield  # one repetition done: the runner may run another driver's now

"""rootfs: `create_read_write` + `get` of a container layer over an image of each depth,
until the rootfs is usable (a bottom-layer file is visible), then `put` and `remove`.

The image for depth d is the workload's layers (cut to d) padded up to d with layers of
one tiny file (and `--pad-bytes` of data each, so data grows with depth); every depth's
image is built up front (untimed), so each round can visit the depths in a random order,
and every repetition gets a fresh container layer. A cold repetition drops the page cache
right before `create_read_write`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..layers import Layers
from ..workloads import Layer, pad_layer
from . import Context, Phase, Repetition, bottom_file, clock, phased, phases

SCENARIO = "rootfs"


def image_layers(ctx: Context, depth: int) -> list[Layer]:
    base = list(ctx.workload.layers[:depth])
    pads = [pad_layer(ctx.workdir, i, ctx.config.pad_bytes) for i in range(len(base), depth)]
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


@dataclass(frozen=True)
class _Image:
    top: str
    probe: str
    files: int
    bytes: int


def run(ctx: Context) -> Iterator[None]:
    driver = ctx.driver
    with Layers(driver, "rf") as built:
        images: dict[int, _Image] = {}
        for depth in ctx.config.depths:
            stack = image_layers(ctx, depth)
            probe = bottom_file([layer.path for layer in stack])
            top = build_image(ctx, built, stack)
            images[depth] = _Image(top, probe, sum(la.files for la in stack), sum(la.bytes for la in stack))

        def body(phase: Phase, rep: Repetition) -> None:
            depth = phase[1]
            assert depth is not None
            image = images[depth]
            with Layers(driver, f"rf{depth}c") as container:
                cid = container.new_id("c")
                rep.start()
                t0 = clock()
                driver.create_read_write(cid, image.top)
                t1 = clock()
                container.created_layer(cid)
                path = driver.get(cid)
                container.got(cid)
                os.stat(os.path.join(path, image.probe))
                os.listdir(path)
                t2 = clock()
                container.put(cid)
                t3 = clock()
                driver.remove(cid)
                t4 = clock()
                container.removed(cid)
            if rep.measured:
                common = {"depth": depth, "files": image.files, "bytes": image.bytes, **rep.columns()}
                ctx.row(SCENARIO, "create_read_write", seconds=t1 - t0, **common)
                ctx.row(SCENARIO, "get", seconds=t2 - t1, **common)
                ctx.row(SCENARIO, "create_read_write+get", seconds=t2 - t0, **common)
                ctx.row(SCENARIO, "put", seconds=t3 - t2, **common)
                ctx.row(SCENARIO, "remove", seconds=t4 - t3, **common)

        yield from phased(ctx, SCENARIO, phases(ctx.config, ctx.config.depths), body)

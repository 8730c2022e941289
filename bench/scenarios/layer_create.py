"""layer-create: `create` and `apply_diff` of each workload layer, timed apart and together,
with the backing filesystem's used space (synced) before and after each layer and the chain."""

from __future__ import annotations

from collections.abc import Iterator

from ..layers import Layers
from ..space import settle, used_bytes
from . import Context, clock, repetitions

SCENARIO = "layer-create"


def run(ctx: Context) -> Iterator[None]:
    driver, mnt = ctx.driver, ctx.sandbox.mountpoint
    for rep in repetitions(ctx):
        with Layers(driver, f"lc{rep.index}{rep.cache[0]}") as layers:
            settle(mnt, ctx.sandbox.backing_fs)
            chain_before = used_bytes(mnt)
            total_create = total_apply = 0.0
            parent = None
            for i, layer in enumerate(ctx.workload.layers):
                layer_id = layers.new_id(f"l{i}")
                before = used_bytes(mnt)
                t0 = clock()
                driver.create(layer_id, parent)
                t1 = clock()
                layers.created_layer(layer_id)
                with open(layer.path, "rb") as stream:
                    t2 = clock()
                    driver.apply_diff(layer_id, parent, stream)
                    t3 = clock()
                after = used_bytes(mnt)
                total_create += t1 - t0
                total_apply += t3 - t2
                if rep.measured:
                    common = {"layer": i, "depth": i + 1, "files": layer.files, "bytes": layer.bytes, **rep.columns()}
                    ctx.row(SCENARIO, "create", seconds=t1 - t0, **common)
                    ctx.row(SCENARIO, "apply_diff", seconds=t3 - t2, **common)
                    ctx.row(SCENARIO, "create+apply_diff", seconds=(t1 - t0) + (t3 - t2), **common).with_space(
                        before, after
                    )
                parent = layer_id
            chain_after = used_bytes(mnt)
            if rep.measured:
                wl = ctx.workload
                common = {"layer": -1, "depth": len(wl.layers), "files": wl.files, "bytes": wl.bytes, **rep.columns()}
                ctx.row(SCENARIO, "chain:create", seconds=total_create, **common)
                ctx.row(SCENARIO, "chain:apply_diff", seconds=total_apply, **common)
                ctx.row(SCENARIO, "chain:create+apply_diff", seconds=total_create + total_apply, **common).with_space(
                    chain_before, chain_after
                )
        yield  # one repetition done: the runner may run another driver's now

"""layer-create: `create` and `apply_diff` of each workload layer, timed apart and together,
with the backing filesystem's used space (synced) before and after each layer and the chain,
and the bytes the applied files occupy (st_blocks), so space can be judged against both the
file bytes and the block-rounded bytes."""

from __future__ import annotations

import functools
import os
import tarfile
from collections.abc import Iterator

from graphdrivers.whiteouts import PREFIX as WHITEOUT

from ..layers import Layers
from ..space import settle, used_bytes
from . import Context, Repetition, clock, phased, phases

SCENARIO = "layer-create"


def run(ctx: Context) -> Iterator[None]:
    yield from phased(ctx, SCENARIO, phases(ctx.config), lambda phase, rep: _chain(ctx, rep))


@functools.cache
def _regular_files(tar_path: str) -> tuple[str, ...]:
    """The regular files a layer tar adds (whiteouts are markers, hard links share blocks)."""
    with tarfile.open(tar_path) as tar:
        return tuple(
            m.name.strip("./")
            for m in tar
            if m.isreg() and not os.path.basename(m.name).startswith(WHITEOUT)
        )


def _allocated(driver, layer_id: str, tar_path: str) -> int:  # type: ignore[no-untyped-def]
    """Bytes the layer's applied files occupy where the layer shows them (st_blocks * 512)."""
    root = driver.get(layer_id)
    try:
        return sum(os.lstat(os.path.join(root, name)).st_blocks * 512 for name in _regular_files(tar_path))
    finally:
        driver.put(layer_id)


def _chain(ctx: Context, rep: Repetition) -> None:
    driver, mnt = ctx.driver, ctx.sandbox.mountpoint
    with Layers(driver, f"lc{rep.index}{rep.cache[0]}") as layers:
        settle(mnt, ctx.sandbox.backing_fs)
        rep.start()
        chain_before = used_bytes(mnt)
        total_create = total_apply = 0.0
        chain_allocated = 0
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
                allocated = _allocated(driver, layer_id, layer.path)
                chain_allocated += allocated
                common = {"layer": i, "depth": i + 1, "files": layer.files, "bytes": layer.bytes, **rep.columns()}
                ctx.row(SCENARIO, "create", seconds=t1 - t0, **common)
                ctx.row(SCENARIO, "apply_diff", seconds=t3 - t2, **common)
                ctx.row(SCENARIO, "create+apply_diff", seconds=(t1 - t0) + (t3 - t2), **common).with_space(
                    before, after, allocated
                )
            parent = layer_id
        chain_after = used_bytes(mnt)
        if rep.measured:
            wl = ctx.workload
            common = {"layer": -1, "depth": len(wl.layers), "files": wl.files, "bytes": wl.bytes, **rep.columns()}
            ctx.row(SCENARIO, "chain:create", seconds=total_create, **common)
            ctx.row(SCENARIO, "chain:apply_diff", seconds=total_apply, **common)
            ctx.row(SCENARIO, "chain:create+apply_diff", seconds=total_create + total_apply, **common).with_space(
                chain_before, chain_after, chain_allocated
            )

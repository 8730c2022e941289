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
    """The timed chain first, untouched between its steps; then, in every repetition alike
    (warm-ups too, so measured chains are followed by what warm-up chains are), each layer's
    allocated bytes, which need a get+put per layer and so must not fall between timed steps."""
    driver, mnt = ctx.driver, ctx.sandbox.mountpoint
    with Layers(driver, f"lc{rep.index}{rep.cache[0]}") as layers:
        settle(mnt, ctx.sandbox.backing_fs)
        rep.start()
        chain_before = used_bytes(mnt)
        timed = []  # per layer: id, create seconds, apply_diff seconds, used bytes before and after
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
            timed.append((layer_id, t1 - t0, t3 - t2, before, used_bytes(mnt)))
            parent = layer_id
        chain_after = used_bytes(mnt)
        allocated = [_allocated(driver, t[0], layer.path) for t, layer in zip(timed, ctx.workload.layers, strict=True)]
        if not rep.measured:
            return
        for i, ((_, create, apply, before, after), layer) in enumerate(zip(timed, ctx.workload.layers, strict=True)):
            common = {"layer": i, "depth": i + 1, "files": layer.files, "bytes": layer.bytes, **rep.columns()}
            ctx.row(SCENARIO, "create", seconds=create, **common)
            ctx.row(SCENARIO, "apply_diff", seconds=apply, **common)
            ctx.row(SCENARIO, "create+apply_diff", seconds=create + apply, **common).with_space(
                before, after, allocated[i]
            )
        wl = ctx.workload
        total_create, total_apply = sum(t[1] for t in timed), sum(t[2] for t in timed)
        common = {"layer": -1, "depth": len(wl.layers), "files": wl.files, "bytes": wl.bytes, **rep.columns()}
        ctx.row(SCENARIO, "chain:create", seconds=total_create, **common)
        ctx.row(SCENARIO, "chain:apply_diff", seconds=total_apply, **common)
        ctx.row(SCENARIO, "chain:create+apply_diff", seconds=total_create + total_apply, **common).with_space(
            chain_before, chain_after, sum(allocated)
        )

"""The layer-create floor: `tar -x` of each workload layer into its own fresh directory.

Each tar is started and waiting on its stdin before the clock (floors/untar.py), and is
fed the layer tar from memory: the floor of `apply_diff` is extracting the files, not
starting a process or reading the tar file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator

from ..scenarios import Context, Phase, Repetition, phased, phases
from .untar import Untar, fed

log = logging.getLogger(__name__)

SCENARIO = "layer-create"


def layer_create(ctx: Context) -> Iterator[None]:
    base = os.path.join(ctx.sandbox.mountpoint, "floor-untar")
    wl = ctx.workload
    try:
        def once(phase: Phase, rep: Repetition) -> None:
            with contextlib.ExitStack() as stack:
                untars = [stack.enter_context(Untar(os.path.join(base, "r", f"l{i}"))) for i in range(len(wl.layers))]
                tars = []
                for layer in wl.layers:
                    with open(layer.path, "rb") as f:
                        tars.append(f.read())
                rep.start()
                total = 0.0
                for i, (layer, untar, data) in enumerate(zip(wl.layers, untars, tars, strict=True)):
                    seconds = fed(untar, data)
                    total += seconds
                    if rep.measured:
                        ctx.row(SCENARIO, "apply_diff", seconds=seconds, layer=i, depth=i + 1, files=layer.files,
                                bytes=layer.bytes, **rep.columns())  # fmt: skip
            if rep.measured:
                ctx.row(SCENARIO, "chain:apply_diff", seconds=total, layer=-1, depth=len(wl.layers),
                        files=wl.files, bytes=wl.bytes, **rep.columns())  # fmt: skip
            shutil.rmtree(base, ignore_errors=True)

        yield from phased(ctx, SCENARIO, phases(ctx.config), once)
    finally:
        shutil.rmtree(base, ignore_errors=True)

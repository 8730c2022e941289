"""`--image FILE`: the layers of a `docker save` archive or an OCI image layout.

The bench needs each layer as a plain tar, bottom first. It reads the archive with the
engine's image loader (`open_bundle` + `plan`), so an image the bench measures is the
image `strata load` would load: the same manifest and index handling, the same platform
choice in a multi-platform index, the same checks. Each layer is then decompressed
(plain, gzip or zstd, by magic) into the scratch directory.
"""

from __future__ import annotations

import os
import shutil

from engine.errors import InvalidArchive
from engine.images import layerstream
from engine.images.graph import LayerSource
from engine.images.load import ImagePlan, open_bundle, plan

from .workloads import Layer, Workload, WorkloadError, layer_from_tar


def workload_from_image(image: str, directory: str) -> Workload:
    if not os.path.isfile(image):
        raise WorkloadError(f"--image {image}: no such file")
    os.makedirs(directory, exist_ok=True)
    try:
        bundle = open_bundle(image)
        try:
            layers = [_unpack(source, os.path.join(directory, f"image-{i:03d}.tar"))
                      for i, source in enumerate(_deepest(plan(bundle)).layers)]
        finally:
            bundle.close()
    except InvalidArchive as exc:
        raise WorkloadError(f"{image}: not a readable docker save / OCI archive: {exc}") from None
    if not layers:
        raise WorkloadError(f"{image}: the image has no layers")
    return Workload(f"image:{os.path.basename(image)}", tuple(layers), f"layers of {image}")


def _deepest(plans: list[ImagePlan]) -> ImagePlan:
    """The image to measure. An archive of a classic image chain also holds its untagged
    parent steps, whose layers are prefixes of the top image's: the deepest is the workload."""
    return max(plans, key=lambda p: len(p.layers))


def _unpack(source: LayerSource, dest: str) -> Layer:
    with source.open() as blob, open(dest, "wb") as out:
        shutil.copyfileobj(layerstream.decompressed(blob), out, layerstream.CHUNK)
    return layer_from_tar(dest)

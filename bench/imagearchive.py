"""`--image FILE`: the layers of a `docker save` archive or an OCI image layout tar.

The bench only needs each layer as a plain tar, bottom first, so this reads the manifest
(docker's `manifest.json`, or OCI `index.json` -> manifest) and decompresses each layer
(plain, gzip or zstd, recognised by magic bytes) into the scratch directory.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tarfile
from typing import IO

from .workloads import Layer, Workload, WorkloadError, _layer_from_tar

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _member(tar: tarfile.TarFile, name: str, image: str) -> IO[bytes]:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise WorkloadError(f"{image}: the manifest names {name!r}, which the archive does not contain")
    return f


def _layer_names(tar: tarfile.TarFile, image: str) -> list[str]:
    names = set(tar.getnames())
    if "manifest.json" in names:
        manifest = json.load(_member(tar, "manifest.json", image))
        with_layers = [entry for entry in manifest if entry.get("Layers")]
        if not with_layers:
            raise WorkloadError(f"{image}: manifest.json has no image with Layers")
        # An archive of a classic image chain also holds its untagged parent steps, whose
        # layers are prefixes of the top image's: the deepest image is the workload.
        return list(max(with_layers, key=lambda entry: len(entry["Layers"]))["Layers"])
    if "index.json" in names:
        index = json.load(_member(tar, "index.json", image))
        digest = index["manifests"][0]["digest"]
        manifest = json.load(_member(tar, "blobs/" + digest.replace(":", "/"), image))
        return ["blobs/" + layer["digest"].replace(":", "/") for layer in manifest["layers"]]
    raise WorkloadError(f"{image}: neither manifest.json (docker save) nor index.json (OCI layout) found")


def _decompress_to(src: IO[bytes], dest: str) -> None:
    head = src.read(4)
    rest = _Prefixed(head, src)
    with open(dest, "wb") as out:
        if head.startswith(GZIP_MAGIC):
            shutil.copyfileobj(gzip.GzipFile(fileobj=rest), out, 1 << 20)
        elif head.startswith(ZSTD_MAGIC):
            import zstandard

            zstandard.ZstdDecompressor().copy_stream(rest, out)
        else:
            shutil.copyfileobj(rest, out, 1 << 20)


class _Prefixed:
    """A stream that yields `head` and then the rest of `tail` (after a magic-byte peek)."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self.head, self.tail = head, tail

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.tail.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.tail.read(n - len(data))
            return data
        return self.tail.read(n)


def workload_from_image(image: str, directory: str) -> Workload:
    if not os.path.isfile(image):
        raise WorkloadError(f"--image {image}: no such file")
    os.makedirs(directory, exist_ok=True)
    try:
        with tarfile.open(image) as tar:
            layers: list[Layer] = []
            for i, name in enumerate(_layer_names(tar, image)):
                dest = os.path.join(directory, f"image-{i:03d}.tar")
                _decompress_to(_member(tar, name, image), dest)
                layers.append(_layer_from_tar(dest))
    except (tarfile.TarError, json.JSONDecodeError, KeyError, IndexError) as exc:
        raise WorkloadError(f"{image}: not a readable docker save / OCI archive: {exc}") from None
    if not layers:
        raise WorkloadError(f"{image}: the image has no layers")
    return Workload(f"image:{os.path.basename(image)}", tuple(layers), f"layers of {image}")

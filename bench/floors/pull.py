"""The pull floors: the same blobs from the same loopback registry, through one plain HTTP
client and the bare primitives, with no digest checks, no layer bookkeeping, no driver.

Every round starts cold, as the pull scenario's (`pull_rounds` drops the page cache):

- `pull`: GET the manifest, then each layer's blob streamed (requests, one connection)
  through zlib's gunzip into a `tar -x` started before the clock, all layers in turn:
  the primitives a pull is made of (a pull must put the files on disk, so the floor does).
- then, cold again, one layer at a time as the scenario's stages: `fetch` (the blob
  streamed into a file), `decompress` (zlib's gunzip, file to file), `apply` (`tar -x`,
  started before the clock, fed the layer tar from memory); `chain:*` sum them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import zlib
from collections.abc import Iterable, Iterator

import requests

from engine import reference
from engine.images import layerstream
from engine.registry.protocol import ACCEPT, CHUNK

from .. import cache
from ..scenarios import Context, clock
from ..scenarios.pull import pull_rounds, record
from .untar import BACKEND as UNTAR
from .untar import Untar, fed

log = logging.getLogger(__name__)

BACKENDS = {"pull": f"HTTP GET + gunzip + {UNTAR}", "fetch": "HTTP GET (requests)", "decompress": "gunzip (zlib)",
            "apply": UNTAR}  # fmt: skip
GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip member


def gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes inside a gzip stream, chunk by chunk (zlib checks the CRC at the end)."""
    inflate = zlib.decompressobj(GZIP)
    for chunk in chunks:
        out = inflate.decompress(chunk)
        if out:
            yield out
    tail = inflate.flush()
    if tail:
        yield tail
    if not inflate.eof:
        raise zlib.error("the gzip stream ended early")


def decompressed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The layer tar inside a blob's chunks: gunzipped when its magic says gzip, else as is."""
    chunks = iter(chunks)
    first = next(chunks, b"")
    kind = layerstream.compression_of(first)
    if kind == "gzip":
        yield from gunzip(itertools.chain([first], chunks))
    elif kind == "none":
        yield first
        yield from chunks
    else:
        raise ValueError(f"a {kind} layer: the floor decompresses gzip only")


class Blobs:
    """The image's manifest and blobs over one plain requests session."""

    def __init__(self, source: str) -> None:
        ref = reference.parse(source)
        self.base = f"http://{ref.registry}/v2/{ref.repository}"
        self.ref = ref.ref
        self.http = requests.Session()

    def layers(self) -> list[str]:
        """GET the manifest: the layer digests, bottom first."""
        answer = self.http.get(f"{self.base}/manifests/{self.ref}", headers={"Accept": ACCEPT}, timeout=60)
        answer.raise_for_status()
        return [layer["digest"] for layer in answer.json()["layers"]]

    def blob(self, digest: str) -> Iterator[bytes]:
        with self.http.get(f"{self.base}/blobs/{digest}", stream=True, timeout=60) as answer:
            answer.raise_for_status()
            yield from answer.iter_content(CHUNK)

    def close(self) -> None:
        self.http.close()


def _whole(blobs: Blobs, untars: list[Untar]) -> float:
    """Manifest, then every blob streamed through gunzip into its waiting tar."""
    t0 = clock()
    digests = blobs.layers()
    for digest, untar in zip(digests, untars, strict=True):
        for data in decompressed(blobs.blob(digest)):
            untar.write(data)
        untar.finish()
    return clock() - t0


def _stages(blobs: Blobs, untars: list[Untar], directory: str) -> list[dict[str, float]]:
    """The manifest (untimed, as the scenario's), then fetch, decompress and apply of every
    layer, one stage at a time; seconds per layer."""
    digests = blobs.layers()
    times = []
    for i, (digest, untar) in enumerate(zip(digests, untars, strict=True)):
        blob, tar = os.path.join(directory, f"blob-{i}"), os.path.join(directory, f"layer-{i}.tar")
        t0 = clock()
        with open(blob, "wb") as out:
            for data in blobs.blob(digest):
                out.write(data)
        t1 = clock()
        with open(blob, "rb") as src, open(tar, "wb") as out:
            for data in decompressed(iter(lambda: src.read(CHUNK), b"")):
                out.write(data)
        t2 = clock()
        with open(tar, "rb") as f:
            layer_tar = f.read()  # untimed: the floor feeds tar from memory
        times.append({"fetch": t1 - t0, "decompress": t2 - t1, "apply": fed(untar, layer_tar)})
    return times


def pull(ctx: Context) -> Iterator[None]:
    base = os.path.join(ctx.sandbox.mountpoint, "floor-pull")
    blobs = Blobs(ctx.pull_source)
    try:
        digests = blobs.layers()  # untimed: how many tars to start
        for index, columns in pull_rounds(ctx):
            with contextlib.ExitStack() as stack:
                untars = [stack.enter_context(Untar(os.path.join(base, "p", f"l{i}"))) for i in range(len(digests))]
                seconds = _whole(blobs, untars)
            shutil.rmtree(base, ignore_errors=True)
            cache.drop()
            with contextlib.ExitStack() as stack:
                untars = [stack.enter_context(Untar(os.path.join(base, "s", f"l{i}"))) for i in range(len(digests))]
                stages = _stages(blobs, untars, base)
            shutil.rmtree(base, ignore_errors=True)
            if index >= 0:
                first = len(ctx.rows)
                record(ctx, seconds, stages, columns)
                for row in ctx.rows[first:]:
                    row.backend = BACKENDS[row.step.removeprefix("chain:")]
            yield
    finally:
        blobs.close()
        shutil.rmtree(base, ignore_errors=True)

"""The blobs an image's layers are sent as, for `push` and `save` alike: the plain layer tar,
or eStargz.

Plain is what strata has always sent: the layer's original tar, reassembled from tar-split
and streamed (its digest is the diff id we already know, so nothing is staged).

eStargz (`--estargz`) is the same tar converted by `graphdrivers.archive.estargz`: a gzip
blob any client pulls as a plain layer, that a lazy puller reads file by file. Its digest
and size are known only once it is written, and a registry upload and an archive entry
both need them first, so each blob is spooled to an anonymous temp file under the
engine's tmp/ (gone when the context ends, or with the process). The blob inflates to a
tar with the TOC and a landmark entry added, so the image config must list *those* diff
ids: docker pull and docker load check the config against what the blobs inflate to, as
strata's own pull does. The config is rewritten with them (so the image has a new id), as
stargz-snapshotter's converter does; the layer descriptor carries the TOC digest and the
uncompressed size annotations.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import IO

from .graph import Graph, Image, Layer
from .save import MT_LAYER, OutImage, OutLayer

log = logging.getLogger(__name__)

ESTARGZ_HELP = "write layers as eStargz (lazily pullable; plain gzip to other clients)"


class LayerBlobs(contextlib.ExitStack):
    """Each layer's blob, made once per context (images sharing a layer share its blob)."""

    def __init__(self, graph: Graph, tmpdir: str, *, estargz: bool) -> None:
        super().__init__()
        self.graph = graph
        self.tmpdir = tmpdir
        self.estargz = estargz
        self._made: dict[str, OutLayer] = {}

    def image(self, image: Image, tags: list[str] | None = None) -> OutImage:
        """The image as its blobs, with a config that lists the blobs' diff ids."""
        layers = [self.layer(layer) for layer in image.layers]
        config = config_with_diff_ids(image.config_bytes, [layer.diff_id for layer in layers])
        return OutImage(config, layers, list(tags or []), image.parent)

    def layer(self, layer: Layer) -> OutLayer:
        made = self._made.get(layer.chain_id)
        if made is None:
            made = self._made[layer.chain_id] = self._estargz(layer) if self.estargz else self._plain(layer)
        return made

    def _plain(self, layer: Layer) -> OutLayer:
        return OutLayer(layer.diff_id, self.graph.layer_tar_size(layer), lambda: self.graph.open_layer_tar(layer))

    def _estargz(self, layer: Layer) -> OutLayer:
        from graphdrivers.archive import estargz  # the converter, loaded only by a push or save that needs it

        os.makedirs(self.tmpdir, exist_ok=True)
        spool = self.enter_context(tempfile.TemporaryFile(dir=self.tmpdir, prefix="estargz-"))
        with self.graph.open_layer_tar(layer) as tar:
            made = estargz.write_estargz(tar, spool)
        log.info("layer %s as eStargz %s (%d bytes, TOC %s)", layer.diff_id[:19], made.digest[:19], made.size,
                 made.toc_digest[:19])
        return OutLayer(made.diff_id, made.size, lambda: _rewound(spool), blob_digest=made.digest,
                        media_type=MT_LAYER["gzip"], annotations={
                            estargz.TOC_DIGEST_ANNOTATION: made.toc_digest,
                            estargz.UNCOMPRESSED_SIZE_ANNOTATION: str(made.uncompressed_size)})


@contextlib.contextmanager
def _rewound(spool: IO[bytes]) -> Iterator[IO[bytes]]:
    spool.seek(0)
    yield spool


def config_with_diff_ids(config_bytes: bytes, diff_ids: list[str]) -> bytes:
    """The config listing `diff_ids` as its rootfs; the very same bytes when it already does
    (a plain push or save must not change an image's id)."""
    config = json.loads(config_bytes)
    rootfs = config.setdefault("rootfs", {"type": "layers"})
    if rootfs.get("diff_ids") == diff_ids:
        return config_bytes
    rootfs["diff_ids"] = diff_ids
    return json.dumps(config, separators=(",", ":")).encode()

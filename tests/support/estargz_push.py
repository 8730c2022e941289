"""Push a test image with eStargz layers to a registry: each layer tar converted with
`estargz.write_estargz`, the config's diff ids made those of the converted tars, and
each layer descriptor annotated with its TOC digest (what `push --estargz` writes)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence

from engine.registry.client import RegistryClient
from engine.registry.protocol import MEDIA_OCI_MANIFEST, Manifest
from graphdrivers.archive import estargz

MEDIA_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"


def push_estargz(host: str, repo: str, tag: str, layer_tars: Sequence[str], workdir: str, *,
                 prioritized: Sequence[Sequence[str]] = (), chunk_size: int = 4 << 20,
                 annotate: bool = True) -> dict:
    """Push; returns {"blobs": [(path, EstargzLayer)], "config": bytes, "size": total blob bytes}."""
    client = RegistryClient(host)
    made, descriptors = [], []
    for i, tar in enumerate(layer_tars):
        out = os.path.join(workdir, f"layer{i}.estargz")
        with open(tar, "rb") as src, open(out, "wb") as dst:
            layer = estargz.write_estargz(src, dst, chunk_size=chunk_size,
                                          prioritized=prioritized[i] if i < len(prioritized) else ())
        with open(out, "rb") as f:
            client.upload_blob(repo, layer.digest, f, layer.size)
        desc = {"mediaType": MEDIA_GZIP_LAYER, "digest": layer.digest, "size": layer.size}
        if annotate:
            desc["annotations"] = {estargz.TOC_DIGEST_ANNOTATION: layer.toc_digest,
                                   estargz.UNCOMPRESSED_SIZE_ANNOTATION: str(layer.uncompressed_size)}
        descriptors.append(desc)
        made.append((out, layer))
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"],
                                                           "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for _, layer in made]},
    }, sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.upload_blob(repo, config_digest, io.BytesIO(config), len(config))
    body = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                       "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
                       "layers": descriptors}).encode()
    client.put_manifest(repo, tag, Manifest(MEDIA_OCI_MANIFEST, body, "sha256:" + hashlib.sha256(body).hexdigest()))
    return {"blobs": made, "config": config, "size": sum(layer.size for _, layer in made) + len(config) + len(body)}

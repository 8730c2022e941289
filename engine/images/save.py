"""Writing image archives: `docker save` format (what `docker load` reads) and OCI layouts.

The docker layout written by `save` is the one Docker 25+ writes: an OCI image layout
(`oci-layout`, `index.json`, `blobs/sha256/`) that also carries `manifest.json` and
`repositories`, so both old (manifest.json) and new (index.json) `docker load` read it.
The "legacy" layout (`<id>/layer.tar`, `<config>.json`) is what Docker 1.10-24 wrote;
the test image builder writes it to check that `load` reads it.

Layers are streamed: a tar entry's size must be known before its data, and each layer
source gives its length up front (the tar-split knows it), so nothing is staged.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from . import layerstream
from .load import MT_OCI_INDEX, MT_OCI_MANIFEST

MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
EPOCH = 0  # archive entry mtimes: fixed, so the same images always make the same archive


@dataclass
class OutLayer:
    """A layer as an archive or a registry gets it: a blob, by default the layer tar itself
    (then its digest is the diff id); `engine.images.layerblob` also makes eStargz ones."""

    diff_id: str
    size: int  # length of the blob
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]
    blob_digest: str = ""  # "" when the blob is the tar: its digest is the diff id
    media_type: str = MT_LAYER["none"]
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.blob_digest or self.diff_id

    def descriptor(self) -> dict[str, object]:
        """The OCI descriptor of the blob (manifests list these)."""
        desc: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc


@dataclass
class OutImage:
    config_bytes: bytes
    layers: list[OutLayer]
    tags: list[str] = field(default_factory=list)
    parent: str | None = None  # image id, written only when that image is in the archive too

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_bytes).hexdigest()


class _Writer:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.written: set[str] = set()

    def dir(self, name: str) -> None:
        if name in self.written:
            return
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
        self.tar.addfile(info)
        self.written.add(name)

    def file(self, name: str, data: bytes) -> None:
        if name in self.written:
            return
        self.stream(name, len(data), io.BytesIO(data))

    def stream(self, name: str, size: int, stream: IO[bytes]) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, EPOCH
        self.tar.addfile(info, stream)
        self.written.add(name)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def write_docker_archive(out: IO[bytes], images: list[OutImage], *, legacy: bool = False) -> None:
    """Write a `docker save` archive of `images` to the stream `out`."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        w = _Writer(tar)
        manifest, repositories, index = [], {}, []
        configs = {image.id: image.config_bytes for image in images}
        for image in images:
            hexid = image.id.split(":", 1)[1]
            if legacy:
                config_name = f"{hexid}.json"
                layer_names = _legacy_layers(w, image)
                w.file(config_name, image.config_bytes)
            else:
                w.dir("blobs")
                w.dir("blobs/sha256")
                config_name = f"blobs/sha256/{hexid}"
                w.file(config_name, image.config_bytes)
                layer_names = []
                for layer in image.layers:
                    name = f"blobs/sha256/{layer.digest.split(':', 1)[1]}"
                    if name not in w.written:
                        with layer.open() as stream:
                            w.stream(name, layer.size, stream)
                    layer_names.append(name)
                oci_manifest = _json({
                    "schemaVersion": 2,
                    "mediaType": MT_OCI_MANIFEST,
                    "config": {"mediaType": MT_OCI_CONFIG, "digest": image.id, "size": len(image.config_bytes)},
                    "layers": [layer.descriptor() for layer in image.layers],
                })
                digest = hashlib.sha256(oci_manifest).hexdigest()
                w.file(f"blobs/sha256/{digest}", oci_manifest)
                for tag in image.tags or [None]:
                    desc = {"mediaType": MT_OCI_MANIFEST, "digest": f"sha256:{digest}", "size": len(oci_manifest)}
                    if tag is not None:
                        desc["annotations"] = {"io.containerd.image.name": _full_name(tag),
                                               "org.opencontainers.image.ref.name": tag.rpartition(":")[2]}
                    index.append(desc)
            entry: dict[str, object] = {"Config": config_name, "RepoTags": image.tags or None, "Layers": layer_names}
            if image.parent in configs and docker_valid_parent(image.config_bytes, configs[image.parent]):
                entry["Parent"] = image.parent
            manifest.append(entry)
            for tag in image.tags:
                repo, _, name = tag.rpartition(":")
                if layer_names:
                    repositories.setdefault(repo, {})[name] = layer_names[-1].split("/")[-2 if legacy else -1]
        if not legacy:
            w.file("index.json", _json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index}))
            w.file("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        w.file("manifest.json", _json(manifest))
        if repositories:
            w.file("repositories", _json(repositories))


def docker_valid_parent(child_config: bytes, parent_config: bytes) -> bool:
    """Docker's rule for a Parent link (moby checkValidParent): the child is its parent plus
    exactly one history step. `docker load` fails on any other Parent, so none is written."""
    child = json.loads(child_config).get("history") or []
    parent = json.loads(parent_config).get("history") or []
    if not child and not parent:
        return True
    return len(child) - len(parent) == 1 and child[: len(parent)] == parent


def _full_name(tag: str) -> str:
    repo = tag.rpartition(":")[0]
    first = repo.split("/", 1)[0]
    if "/" in repo and ("." in first or ":" in first or first == "localhost"):
        return tag
    return f"docker.io/{tag}" if "/" in repo else f"docker.io/library/{tag}"


def _legacy_layers(w: _Writer, image: OutImage) -> list[str]:
    """Docker 1.10-24 layout: one directory per layer named by a v1 id derived from the chain."""
    names, parent_v1 = [], ""
    for layer in image.layers:
        v1 = hashlib.sha256(f"{parent_v1} {layer.diff_id}".encode()).hexdigest()
        w.dir(v1)
        w.file(f"{v1}/VERSION", b"1.0")
        v1_json = {"id": v1, "created": "1970-01-01T00:00:00Z", "container_config": {}}
        if parent_v1:
            v1_json["parent"] = parent_v1
        w.file(f"{v1}/json", _json(v1_json))
        if f"{v1}/layer.tar" not in w.written:
            with layer.open() as stream:
                w.stream(f"{v1}/layer.tar", layer.size, stream)
        names.append(f"{v1}/layer.tar")
        parent_v1 = v1
    return names


def write_oci_layout(path: str, image: OutImage, *, compression: str = "gzip", as_tar: bool = False) -> None:
    """An OCI image layout of one image (a directory, or a tar of one), layers compressed.

    Compressed blobs are built in memory: this is for test images, not for `save`.
    """
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layer_descs = []
    for layer in image.layers:
        with layer.open() as stream:
            raw = stream.read()
        data = _compress(raw, compression)
        layer_descs.append({"mediaType": MT_LAYER[compression], "digest": add(data), "size": len(data)})
    config_digest = add(image.config_bytes)
    manifest = _json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                      "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest,
                                 "size": len(image.config_bytes)},
                      "layers": layer_descs})
    desc = {"mediaType": MT_OCI_MANIFEST, "digest": add(manifest), "size": len(manifest)}
    if image.tags:
        desc["annotations"] = {"org.opencontainers.image.ref.name": image.tags[0]}
    files = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
             "index.json": _json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [desc]})}
    files.update({f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()})
    if as_tar:
        with open(path, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            w = _Writer(tar)
            for name, data in sorted(files.items()):
                w.file(name, data)
        return
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)) or path, exist_ok=True)
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def _compress(raw: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(raw, compresslevel=1, mtime=0)
    if compression == "zstd":
        return layerstream.zstd().ZstdCompressor(level=1).compress(raw)
    return raw

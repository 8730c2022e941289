"""The registry jobs: pull, push and search over the OCI distribution API.

Layers are streamed straight from the registry into the graphdriver (the Graph verifies
the blob digest and the diff id as it applies), and pushed straight from the driver
(reassembled from tar-split, so the blob is byte-identical to what was loaded and its
digest is the diff id we already know). Nothing is buffered whole.

Options: `username`/`password` for the registry's login, `insecure` (plain HTTP to a
non-loopback registry), `platform` ("linux/amd64") for pull, `limit` and `json` for search.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from graphdrivers.errors import EstargzError, LazyNotSupported

from .. import reference
from ..errors import DigestMismatch, InvalidArchive, NoSuchImage, RegistryError, UsageError
from ..images.graph import Graph, LayerSource, NewImage
from ..images.layerblob import ESTARGZ_HELP, LayerBlobs
from ..job import Job
from ..jobspec import JobTable, Option
from ..system import host
from .protocol import MEDIA_OCI_MANIFEST, Credentials, Manifest

if TYPE_CHECKING:
    from graphdrivers.lazy.source import LazyBlob

    from .client import RegistryClient

MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

jobs = JobTable()
AUTH = {
    "username": Option(str, "registry user", ("-u", "--username")),
    "password": Option(str, "registry password (the CLI reads it with --password-stdin)"),
    "insecure": Option(bool, "allow plain HTTP to a non-loopback registry", ("--insecure",)),
}


def _client(job: Job, registry: str) -> RegistryClient:
    user = job.options["username"]
    credentials = Credentials(user, job.options["password"] or "") if user else None
    return job.engine.registry.client(registry, credentials, insecure=job.options["insecure"])


def _platform(job: Job) -> tuple[str, str]:
    os_name, arch, variant = host.parse_platform(job.options["platform"])
    if variant:
        raise UsageError(f"pull --platform {job.options['platform']}: strata picks manifests by OS and "
                         "architecture; a variant is not supported")
    return os_name, arch


# -- pull ----------------------------------------------------------------------------------


ALL_TAGS = Option(bool, "every tag of the repository", ("-a", "--all-tags"))


def _all_tags(job: Job) -> bool:
    """The all_tags option, refused with a tag or digest (as docker's -a is)."""
    if not job.options["all_tags"]:
        return False
    _, path = reference.split_domain(job.args[0])
    if "@" in path or ":" in path:
        raise UsageError(f"{job.name} --all-tags takes a repository name, not a tag or digest: {job.args[0]!r}")
    return True


@jobs.job("pull", args="NAME[:TAG|@DIGEST]", help="download an image from a registry", options={
    **AUTH, "platform": Option(str, "OS/ARCH of the image to pull (default: this machine's)", ("--platform",)),
    "all_tags": ALL_TAGS,
    "lazy": Option(bool, "fetch only each eStargz layer's TOC now; files arrive when first read", ("--lazy",))})
def pull(job: Job) -> int:
    """`pull NAME[:TAG|@DIGEST]`: prints progress lines, then the digest and the image id
    (all_tags: of every tag the registry lists for the repository, in order).

    With `lazy`, each layer must be eStargz (its TOC digest annotated): only the TOC is
    fetched (two Range requests), checked against the annotation, and the image is
    registered at once; the driver fetches files when they are first read."""
    ref = reference.parse(job.args[0])
    graph: Graph = job.engine.graph
    if job.options["lazy"] and (reason := graph.driver.lazy_unsupported()) is not None:
        raise LazyNotSupported(graph.driver.name, reason)
    client = _client(job, ref.registry)
    platform = _platform(job)
    if not _all_tags(job):
        return _pull_one(job, client, ref, platform)
    tags = sorted(client.tags(ref.repository))
    if not tags:
        raise RegistryError(f"{ref.familiar_name}: the registry lists no tags for it", 404)
    for tag in tags:
        _pull_one(job, client, dataclasses.replace(ref, tag=tag), platform)
    return 0


def _pull_one(job: Job, client: RegistryClient, ref: reference.Reference, platform: tuple[str, str]) -> int:
    lazy = job.options["lazy"]
    graph: Graph = job.engine.graph
    manifest = client.get_manifest(ref.repository, ref.ref, platform)
    body = manifest.json
    job.write(f"{ref.tag or ref.digest}: Pulling from {ref.repository}\n")
    config_desc = body.get("config") or {}
    config_bytes = _fetch_config(client, ref, config_desc)
    config = json.loads(config_bytes)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layer_descs = body.get("layers") or []
    if len(diff_ids) != len(layer_descs):
        raise InvalidArchive(f"{ref}: the manifest lists {len(layer_descs)} layers, the config {len(diff_ids)}")
    if lazy:
        for desc in layer_descs:
            _toc_digest(ref, desc)  # refuse before anything is made
    tags = [ref.local_tag] if ref.tag else []
    with graph.lease() as lease:
        parent = None
        layers = []
        for desc, diff_id in zip(layer_descs, diff_ids, strict=True):
            digest = desc["digest"]
            if lazy:
                layer, created = graph.ensure_lazy_layer(
                    lease, parent, diff_id, functools.partial(_lazy_blob, client, ref, desc, diff_id))
                done = "Pull complete (lazy: TOC only)"
            else:
                source = LayerSource(name=f"{ref.repository}@{digest[:19]}", open=_blob_opener(client, ref, digest),
                                     digest=digest, size=desc.get("size"))
                layer, created = graph.ensure_layer(lease, parent, diff_id, source)
                done = "Pull complete"
            job.engine.registry.remember(digest, ref)
            job.write(f"{digest[7:19]}: {done if created else 'Already exists'}\n")
            job.report(action="layer", item=digest, created=created)
            layers.append(layer)
            parent = layer.chain_id
        [(image_id, _)] = graph.commit(lease, [NewImage(config_bytes, layers, tags)])
    graph.record_digest(image_id, ref.familiar_name, manifest.digest)
    job.write(f"Digest: {manifest.digest}\n")
    job.write(f"Status: Downloaded image for {ref}\n")
    job.write(f"{image_id}\n")
    return 0


def _toc_digest(ref: reference.Reference, desc: dict) -> str:
    """The layer's eStargz TOC digest annotation; a layer without it cannot be pulled lazily."""
    from graphdrivers.archive import estargz  # the format, loaded only by lazy pulls (not every engine start)

    toc_digest = (desc.get("annotations") or {}).get(estargz.TOC_DIGEST_ANNOTATION)
    if not toc_digest or not desc.get("size"):
        raise UsageError(f"{ref}: layer {desc.get('digest')} is not eStargz (no {estargz.TOC_DIGEST_ANNOTATION} "
                         "annotation), so it cannot be pulled lazily; pull the image without --lazy, or push it "
                         "with --estargz")
    return toc_digest


def _lazy_blob(client: RegistryClient, ref: reference.Reference, desc: dict, diff_id: str) -> LazyBlob:
    """Fetch the layer's footer and TOC only, and check the TOC against its annotation."""
    from graphdrivers.archive import estargz  # loaded only by lazy pulls
    from graphdrivers.lazy.source import BlobSource, LazyBlob

    digest, size = desc["digest"], int(desc["size"])
    pieces: dict[tuple[int, int], bytes] = {}

    def read_range(start: int, end: int) -> bytes:
        pieces[start, end] = data = client.read_range(ref.repository, digest, start, end)
        return data

    try:
        toc, toc_digest = estargz.read_toc(read_range, size)
    except EstargzError as exc:
        raise InvalidArchive(f"{ref}: layer {digest} has no readable eStargz TOC: {exc}") from None
    if toc_digest != _toc_digest(ref, desc):
        raise DigestMismatch(f"{ref}: layer {digest}'s TOC hashes to {toc_digest}, its annotation says "
                             f"{_toc_digest(ref, desc)}")
    offset = int(toc.toc_offset or 0)
    tail = _joined(pieces, offset, size) or read_range(offset, size)
    source = BlobSource(url=client.blob_url(ref.repository, digest), digest=digest, size=size, diff_id=diff_id,
                        toc_offset=offset, headers=client.auth_headers(ref.repository))
    return LazyBlob(source, toc.to_json(), tail)


def _joined(pieces: dict[tuple[int, int], bytes], start: int, end: int) -> bytes | None:
    """Bytes [start, end) from ranges already fetched, if they cover it."""
    out, at = [], start
    for (s, e), data in sorted(pieces.items()):
        if s <= at < e:
            out.append(data[at - s: min(e, end) - s])
            at = min(e, end)
    return b"".join(out) if at >= end else None


def _fetch_config(client: RegistryClient, ref: reference.Reference, desc: dict) -> bytes:
    digest = desc.get("digest")
    if not digest:
        raise InvalidArchive(f"{ref}: the manifest has no config descriptor")
    buf = _Bounded(limit=8 << 20)
    client.fetch_blob(ref.repository, digest, buf)
    return buf.getvalue()


class _Bounded:
    """A write sink that refuses more than `limit` bytes (a config is small JSON)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise InvalidArchive(f"image config over {self.limit} bytes")
        self.parts.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def _blob_opener(client: RegistryClient, ref: reference.Reference, digest: str):
    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        with client.open_blob(ref.repository, digest) as stream:
            yield stream
    return opener


# -- push ----------------------------------------------------------------------------------


@jobs.job("push", args="NAME[:TAG]", help="upload an image to the registry its name starts with", options={
    **AUTH, "all_tags": ALL_TAGS, "estargz": Option(bool, ESTARGZ_HELP, ("--estargz",))})
def push(job: Job) -> int:
    """`push NAME[:TAG]`: the local image of that name to the registry its name starts with
    (all_tags: every local tag of the repository); with `--estargz` its layers as eStargz
    blobs (see engine.images.layerblob)."""
    ref = reference.parse(job.args[0])
    if ref.digest:
        raise UsageError("push takes a tag, not a digest")
    graph: Graph = job.engine.graph
    refs = [ref]
    if _all_tags(job):
        refs = sorted({dataclasses.replace(ref, tag=t.rpartition(":")[2]) for image in graph.images()
                       for t in image.tags if t.rpartition(":")[0] == ref.familiar_name}, key=str)
        if not refs:
            raise NoSuchImage(f"{ref.familiar_name} (no local tag of it)")
    client = _client(job, ref.registry)
    job.write(f"The push refers to repository [{ref.registry}/{ref.repository}]\n")
    for one in refs:
        _push_one(job, graph, client, one)
    return 0


def _push_one(job: Job, graph: Graph, client: RegistryClient, ref: reference.Reference) -> None:
    image = graph.get_image(ref.local_tag)
    with LayerBlobs(graph, os.path.join(job.engine.root, "tmp"), estargz=job.options["estargz"]) as blobs:
        out = blobs.image(image)
        for layer in out.layers:
            mount_from = job.engine.registry.mount_source(layer.digest, ref)
            with layer.open() as stream:
                outcome = client.upload_blob(ref.repository, layer.digest, stream, layer.size, mount_from=mount_from)
            job.engine.registry.remember(layer.digest, ref)
            job.write(f"{layer.digest[7:19]}: {_PUSHED[outcome]}\n")
    config_digest = "sha256:" + hashlib.sha256(out.config_bytes).hexdigest()
    client.upload_blob(ref.repository, config_digest, io.BytesIO(out.config_bytes), len(out.config_bytes))
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(out.config_bytes)},
        "layers": [layer.descriptor() for layer in out.layers],
    }, separators=(",", ":")).encode()
    manifest = Manifest(MEDIA_OCI_MANIFEST, body, "sha256:" + hashlib.sha256(body).hexdigest())
    digest = client.put_manifest(ref.repository, ref.tag or "latest", manifest)
    graph.record_digest(image.id, ref.familiar_name, digest)
    job.write(f"{ref.tag or 'latest'}: digest: {digest} size: {len(body)}\n")


_PUSHED = {"exists": "Layer already exists", "mounted": "Mounted from another repository", "uploaded": "Pushed"}


# -- search --------------------------------------------------------------------------------


@jobs.job("search", args="REGISTRY/TERM", help="repositories of a registry whose names contain TERM", options={
    **AUTH, "limit": Option(int, "at most this many results", ("--limit",), 25),
    "json": Option(bool, "JSON output", ("--json",))})
def search(job: Job) -> int:
    """`search REGISTRY/TERM`: repositories of the registry's catalog that contain TERM."""
    first, rest = reference.split_domain(job.args[0])
    if first is None:
        raise UsageError("search needs the registry: REGISTRY/TERM (a v2 registry has no global index)")
    client = _client(job, first)
    found = client.search(rest, job.options["limit"])
    if job.options["json"]:
        job.write_json([{"name": f"{first}/{name}", "description": "", "star_count": 0, "is_official": False,
                         "is_automated": False} for name in found])
    else:
        job.write("NAME\n" + "".join(f"{first}/{name}\n" for name in found))
    return 0


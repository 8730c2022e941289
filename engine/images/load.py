"""Reading image archives: `docker save` (legacy and OCI-based) and OCI image layouts.

Everything that can be checked without applying a layer is checked before the driver
is touched: the manifests parse, every referenced blob exists, the config's digest
matches its name, the layer count matches the config's diff ids. Layer blobs are then
verified while they stream into the driver (see Graph.ensure_layer), so a bad layer is
found without reading it twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import InvalidArchive
from ..reference import normalize_tag
from ..system import host
from .graph import LayerSource, image_id_of

MAX_METADATA = 16 << 20  # manifests and configs larger than this are refused, not parsed
_BLOB_RE = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_CONFIG_JSON_RE = re.compile(r"^([a-f0-9]{64})\.json$")
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}


class Bundle:
    """Named files of an archive: a tar file or a directory."""

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        if not self.exists(name):
            raise InvalidArchive(f"the archive has no {name}")
        if self.size(name) > MAX_METADATA:
            raise InvalidArchive(f"{name} is too large for metadata ({self.size(name)} bytes)")
        with self.open(name) as f:
            return f.read()

    def read_json(self, name: str) -> Any:
        return parse_json(self.read(name), name)

    def close(self) -> None:
        pass


def parse_json(data: bytes, what: str) -> Any:
    """Archive metadata as JSON; malformed or absurdly nested (RecursionError) is InvalidArchive."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArchive(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArchive(f"{what} nests too deeply to be image metadata") from None


def sparse(tar: tarfile.TarFile) -> bool:
    return any(m.issparse() for m in tar.getmembers())


def _clean(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return name


class _Section(io.RawIOBase):
    """`size` bytes of a file from its current position."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f = f
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        n = min(len(buf), self.left)
        if n == 0:
            return 0
        data = self.f.read(n)
        buf[: len(data)] = data
        self.left -= len(data)
        return len(data)


class TarBundle(Bundle):
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*")
            self.members = {_clean(m.name): m for m in self.tar.getmembers() if m.isfile()}
            links = [m for m in self.tar.getmembers() if m.issym() or m.islnk()]
            self.plain = self.tar.fileobj.__class__ is io.BufferedReader and not sparse(self.tar)
        except tarfile.ReadError:
            raise InvalidArchive(f"{path} is not a readable image archive (not a tar, plain or compressed)") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArchive(f"{path} is not a readable image archive: {exc}") from None
        for link in links:  # docker <= 24 saves a repeated layer as a symlink to the first copy
            target = self._link_target(link)
            if target is not None:
                self.members[_clean(link.name)] = target

    def _link_target(self, link: tarfile.TarInfo) -> tarfile.TarInfo | None:
        """The regular file a symlink or hard link member names, staying inside the archive."""
        for _ in range(8):
            if link.islnk():
                name = _clean(link.linkname)
            else:
                name = posixpath.normpath(posixpath.join(posixpath.dirname(_clean(link.name)), link.linkname))
                if name.startswith("../") or name == ".." or link.linkname.startswith("/"):
                    return None
            if name in self.members:
                return self.members[name]
            nxt = next((m for m in self.tar.getmembers() if _clean(m.name) == name and (m.issym() or m.islnk())), None)
            if nxt is None:
                return None
            link = nxt
        return None

    def exists(self, name: str) -> bool:
        return _clean(name) in self.members

    def size(self, name: str) -> int:
        return self.members[_clean(name)].size

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        member = self.members.get(_clean(name))
        if member is None:
            raise InvalidArchive(f"the archive has no {name}")
        if self.plain:  # read the member's bytes straight from the file: faster, and thread-safe
            with open(self.path, "rb") as f:
                f.seek(member.offset_data)
                yield _Section(f, member.size)
            return
        f = self.tar.extractfile(member)
        assert f is not None
        try:
            yield f
        finally:
            f.close()

    def close(self) -> None:
        self.tar.close()


class DirBundle(Bundle):
    def __init__(self, path: str) -> None:
        self.root = os.path.realpath(path)

    def _path(self, name: str) -> str:
        path = os.path.realpath(os.path.join(self.root, _clean(name)))
        if not path.startswith(self.root + os.sep):
            raise InvalidArchive(f"{name} points outside the image layout")
        return path

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def size(self, name: str) -> int:
        return os.path.getsize(self._path(name))

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        try:
            f = open(self._path(name), "rb")
        except FileNotFoundError:
            raise InvalidArchive(f"the image layout has no {name}") from None
        with f:
            yield f


def open_bundle(path: str) -> Bundle:
    if os.path.isdir(path):
        return DirBundle(path)
    if not os.path.exists(path):
        raise InvalidArchive(f"{path}: no such file or directory")
    return TarBundle(path)


@dataclass
class ImagePlan:
    """One image to load: its config, where each layer comes from, its tags."""

    config_bytes: bytes
    diff_ids: list[str]
    layers: list[LayerSource]
    tags: list[str] = field(default_factory=list)
    parent: str | None = None

    @property
    def id(self) -> str:
        return image_id_of(self.config_bytes)

    @property
    def total_bytes(self) -> int:
        return sum(layer.size or 0 for layer in self.layers)


def plan(bundle: Bundle) -> list[ImagePlan]:
    """The images an archive holds, checked as far as possible without reading layers."""
    if bundle.exists("manifest.json"):
        plans = _docker_plans(bundle)
    elif bundle.exists("index.json"):
        plans = _oci_plans(bundle)
    else:
        raise InvalidArchive("neither a docker save archive (manifest.json) nor an OCI image layout (index.json)")
    if not plans:
        raise InvalidArchive("the archive holds no image")
    return plans


def _blob_source(bundle: Bundle, name: str) -> LayerSource:
    if not bundle.exists(name):
        raise InvalidArchive(f"the manifest names layer {name}, which is missing from the archive")
    match = _BLOB_RE.match(_clean(name))
    return LayerSource(name=name, open=lambda: bundle.open(name), digest="sha256:" + match.group(1) if match else None,
                       size=bundle.size(name))


def _docker_plans(bundle: Bundle) -> list[ImagePlan]:
    manifest = bundle.read_json("manifest.json")
    if not isinstance(manifest, list):
        raise InvalidArchive("manifest.json is not a list of images")
    plans = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise InvalidArchive(f"manifest.json entry without Config and Layers: {entry!r:.200}")
        name = entry["Config"]
        config_bytes = bundle.read(name)
        expected = _BLOB_RE.match(_clean(name)) or _CONFIG_JSON_RE.match(_clean(name))
        if expected and hashlib.sha256(config_bytes).hexdigest() != expected.group(1):
            raise InvalidArchive(f"config {name}: digest sha256:{hashlib.sha256(config_bytes).hexdigest()} "
                                 "does not match its name")
        diff_ids = _diff_ids(name, config_bytes)
        layers = [_blob_source(bundle, str(layer)) for layer in entry["Layers"]]
        if len(layers) != len(diff_ids):
            raise InvalidArchive(f"{name}: the manifest lists {len(layers)} layers, the config {len(diff_ids)}")
        tags = [normalize_tag(t) for t in entry.get("RepoTags") or []]
        parent = entry.get("Parent") or None
        plans.append(ImagePlan(config_bytes, diff_ids, layers, tags, parent))
    return plans


def _diff_ids(name: str, config_bytes: bytes) -> list[str]:
    config = parse_json(config_bytes, f"config {name}")
    try:
        diff_ids = config["rootfs"]["diff_ids"]
    except (KeyError, TypeError) as exc:
        raise InvalidArchive(f"config {name} is not an image config (rootfs.diff_ids): {exc}") from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and re.match(r"^sha256:[a-f0-9]{64}$", d)
                                                 for d in diff_ids):
        raise InvalidArchive(f"config {name}: rootfs.diff_ids must be sha256 digests")
    return diff_ids


def _read_blob(bundle: Bundle, descriptor: Any, what: str) -> bytes:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
        raise InvalidArchive(f"{what}: malformed descriptor {descriptor!r:.200}")
    digest = descriptor["digest"]
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not re.match(r"^[a-f0-9]{64}$", hexpart):
        raise InvalidArchive(f"{what}: unsupported digest {digest!r}")
    name = f"blobs/sha256/{hexpart}"
    if not bundle.exists(name):
        raise InvalidArchive(f"{what} {digest} is missing from the archive")
    data = bundle.read(name)
    if hashlib.sha256(data).hexdigest() != hexpart:
        raise InvalidArchive(f"{what} {digest}: the blob's digest does not match")
    if "size" in descriptor and descriptor["size"] != len(data):
        raise InvalidArchive(f"{what} {digest}: {len(data)} bytes, the descriptor says {descriptor['size']}")
    return data


def _oci_plans(bundle: Bundle) -> list[ImagePlan]:
    if bundle.exists("oci-layout"):
        layout = bundle.read_json("oci-layout")
        if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
            raise InvalidArchive(f"oci-layout: unsupported imageLayoutVersion {layout!r:.100}")
    index = bundle.read_json("index.json")
    plans: list[ImagePlan] = []
    _walk_index(bundle, index, plans, depth=0)
    return plans


def _walk_index(bundle: Bundle, index: Any, plans: list[ImagePlan], depth: int) -> None:
    if depth > 4 or not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArchive("index.json is not an OCI image index")
    for desc in index["manifests"]:
        media = desc.get("mediaType") if isinstance(desc, dict) else None
        if media in (MT_OCI_INDEX, MT_DOCKER_LIST):
            nested = parse_json(_read_blob(bundle, desc, "image index"), f"image index {desc.get('digest')}")
            _walk_index(bundle, _pick_platform(nested), plans, depth + 1)
        elif media in (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST):
            plans.append(_oci_image(bundle, desc))
        else:
            raise InvalidArchive(f"index.json: unsupported manifest media type {media!r}")


def _pick_platform(index: Any) -> Any:
    """Of a multi-platform index keep the manifests for linux on this machine's architecture."""
    arch = host.arch()
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArchive("a nested image index is malformed")
    chosen = [d for d in index["manifests"] if isinstance(d, dict)
              and (d.get("platform") or {}).get("architecture", arch) == arch
              and (d.get("platform") or {}).get("os", "linux") == "linux"]
    if not chosen:
        raise InvalidArchive(f"the image index has no manifest for linux/{arch}")
    return {**index, "manifests": chosen[:1]}


def _oci_image(bundle: Bundle, desc: dict) -> ImagePlan:
    manifest = parse_json(_read_blob(bundle, desc, "image manifest"), f"image manifest {desc.get('digest')}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise InvalidArchive(f"image manifest {desc.get('digest')} has no layers list")
    config_bytes = _read_blob(bundle, manifest.get("config"), "image config")
    diff_ids = _diff_ids(f"config of {desc['digest']}", config_bytes)
    layers = []
    for layer in manifest["layers"]:
        if not isinstance(layer, dict) or layer.get("mediaType") not in LAYER_TYPES:
            media = layer.get("mediaType") if isinstance(layer, dict) else layer
            raise InvalidArchive(f"unsupported layer media type {media!r}")
        hexpart = str(layer.get("digest", "")).partition(":")[2]
        source = _blob_source(bundle, f"blobs/sha256/{hexpart}")
        if source.digest != layer.get("digest"):
            raise InvalidArchive(f"layer digest {layer.get('digest')!r} is not a sha256 digest")
        if "size" in layer and layer["size"] != source.size:
            raise InvalidArchive(f"layer {layer['digest']}: {source.size} bytes, the manifest says {layer['size']}")
        layers.append(source)
    if len(layers) != len(diff_ids):
        raise InvalidArchive(f"manifest {desc['digest']} lists {len(layers)} layers, its config {len(diff_ids)}")
    annotations = desc.get("annotations") or {}
    name = annotations.get("io.containerd.image.name") or annotations.get("org.opencontainers.image.ref.name")
    tags = []
    if name and (":" in name or "/" in name):
        tags.append(normalize_tag(name))
    return ImagePlan(config_bytes, diff_ids, layers, tags)

"""The Graph: images and the layers they are made of, over one graphdriver.

An image is its config JSON (its id is the config's sha256) plus an ordered list of
layers. Each layer is one driver layer named by its chain id (the digest of the layer
and everything below it), so two images that share a base share its layers on disk.

Crash safety comes from journaling in the GraphDB before touching the driver: a layer row
is written in state `creating` before `driver.create`, turns `ready` only after its
content is verified, and goes to `removing` before `driver.remove`. An image and its
tags are committed in one transaction after all its layers are ready. At startup
`repair()` removes every layer that is not `ready` and every ready layer no image needs
(left by a load that died before committing), so a `kill -9` at any point leaves no
half image and no orphan layer.

Concurrency: a load *pins* each layer it uses (in memory) for as long as it runs; the
layer garbage collector never removes a pinned layer or one an image or a child layer
still uses. Lock order is: per-layer lock, then the graph lock, then the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tarfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from graphdrivers import Driver
from graphdrivers.errors import LayerNotFound, UnsafeArchive
from graphdrivers.locks import KeyedLocks

from ..errors import Conflict, EngineError, ImageInUse, InvalidArchive, InvalidReference, NoSuchImage
from ..reference import image_hex, normalize_tag
from . import layerstream
from .graphdb import TAGS, GraphDB

if TYPE_CHECKING:
    from graphdrivers.lazy.source import LazyBlob

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id      TEXT PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    config  BLOB NOT NULL,
    added   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    parent   TEXT,
    diff_id  TEXT NOT NULL,
    size     INTEGER NOT NULL DEFAULT 0,
    state    TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing'))
);
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chain_id TEXT NOT NULL REFERENCES layers(chain_id),
    PRIMARY KEY (image_id, position)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
"""

Progress = Callable[[int], None]


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """The OCI chain id (hex, usable as a driver layer id) of `diff_id` over `parent_chain`."""
    if parent_chain is None:
        return diff_id.split(":", 1)[1]
    return hashlib.sha256(f"sha256:{parent_chain} {diff_id}".encode()).hexdigest()


def diff_id_of_file(path: str) -> str:
    """The diff id of a layer file (the digest of its uncompressed tar)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            stream = layerstream.decompressed(raw)
            while chunk := stream.read(layerstream.CHUNK):
                digest.update(chunk)
    except (EOFError, zlib.error, layerstream.zstd().ZstdError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise InvalidArchive(f"{path} cannot be decompressed: {exc}") from None
    return "sha256:" + digest.hexdigest()


def _verify(source: LayerSource, diff_id: str, blob: layerstream.HashingReader,
            tar: layerstream.HashingReader) -> None:
    if source.digest is not None and blob.digest() != source.digest:
        raise InvalidArchive(f"layer {source.name}: digest {blob.digest()} does not match {source.digest}")
    if source.size is not None and blob.count != source.size:
        raise InvalidArchive(f"layer {source.name}: {blob.count} bytes, the manifest says {source.size}")
    if tar.digest() != diff_id:
        raise InvalidArchive(f"layer {source.name}: content digest {tar.digest()} does not match "
                             f"the config's diff id {diff_id}")


def _checked(chunks: Iterator[bytes], total: int, layer: Layer) -> Iterator[bytes]:
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        digest.update(chunk)
        seen += len(chunk)
        if seen >= total and "sha256:" + digest.hexdigest() != layer.diff_id:
            raise InvalidArchive(f"layer {layer.chain_id[:12]} no longer matches its diff id {layer.diff_id} "
                                 "(its files changed in the driver)")
        yield chunk


def image_id_of(config_bytes: bytes) -> str:
    return "sha256:" + hashlib.sha256(config_bytes).hexdigest()


@dataclass(frozen=True)
class Layer:
    chain_id: str  # the driver layer id
    diff_id: str
    size: int
    parent: str | None


@dataclass
class Image:
    id: str
    config: dict[str, Any]
    config_bytes: bytes
    layers: list[Layer]
    parent: str | None
    tags: list[str]
    added: float

    @property
    def top_layer(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]


@dataclass
class LayerSource:
    """Where a layer blob comes from: `open()` yields the (maybe compressed) blob bytes."""

    name: str
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]
    digest: str | None = None  # the blob's digest, when the format names one
    size: int | None = None


@dataclass
class NewImage:
    config_bytes: bytes
    layers: list[Layer]
    tags: list[str] = field(default_factory=list)
    parent: str | None = None


class Lease:
    """The layers one operation pinned; released together (and collected if unused)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.chains: list[str] = []

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.graph._release(self)


class Graph:
    def __init__(self, home: str, driver: Driver, db: GraphDB) -> None:
        self.home = home
        self.driver = driver
        self.db = db
        self.layerdata = os.path.join(home, "layerdata")
        os.makedirs(self.layerdata, exist_ok=True)
        self._lock = threading.RLock()
        self._layer_locks = KeyedLocks()
        self._pins: Counter[str] = Counter()
        db.create_tables(_SCHEMA)
        self.repair()

    # -- layers ------------------------------------------------------------------------

    def tarsplit_path(self, chain: str) -> str:
        return os.path.join(self.layerdata, chain + ".tarsplit")

    def layer(self, chain: str) -> Layer | None:
        rows = self.db.query(
            "SELECT chain_id, diff_id, size, parent FROM layers WHERE chain_id = ? AND state = 'ready'", (chain,))
        return Layer(*rows[0]) if rows else None

    def lease(self) -> Lease:
        return Lease(self)

    def ensure_layer(self, lease: Lease, parent: str | None, diff_id: str, source: LayerSource,
                     progress: Progress | None = None) -> tuple[Layer, bool]:
        """The layer `diff_id` over `parent`, applied from `source` unless already present.

        Returns (layer, created). The layer stays pinned by `lease`. Any failure leaves
        no trace of the layer and raises InvalidArchive (bad content) or a driver error.
        """
        def fill(chain: str) -> int:
            self.driver.create(chain, parent)
            return self._apply(chain, parent, diff_id, source, progress)

        layer, created = self._ensure(lease, parent, diff_id, fill)
        if not created and progress is not None and source.size:
            progress(source.size)
        return layer, created

    def ensure_lazy_layer(self, lease: Lease, parent: str | None, diff_id: str,
                          blob: Callable[[], LazyBlob]) -> tuple[Layer, bool]:
        """The layer `diff_id` over `parent`; unless present, a lazy one: `blob()` (the
        layer's TOC, fetched only now) gives the driver its metadata, and its files
        arrive when first read. Journaled like any layer: a crash leaves nothing."""
        return self._ensure(lease, parent, diff_id, lambda chain: self.driver.create_lazy(chain, parent, blob()))

    def _ensure(self, lease: Lease, parent: str | None, diff_id: str,
                fill: Callable[[str], int]) -> tuple[Layer, bool]:
        chain = chain_id(parent, diff_id)
        with self._layer_locks.hold(chain):
            with self._lock:
                self._pins[chain] += 1
                lease.chains.append(chain)
            existing = self.layer(chain)
            if existing is None:
                return self._create_layer(chain, parent, diff_id, fill), True
            if not self.driver.exists(chain):
                users = ", ".join(u[7:19] for u in self.layer_users(chain)) or "none"
                raise EngineError(f"layer {chain[:12]} is recorded but missing from the {self.driver.name} driver "
                                  f"(removed behind the engine's back); remove the images using it ({users}) "
                                  "and load again")
            return existing, False

    def pin(self, lease: Lease, layers: Iterable[Layer]) -> None:
        """Pin existing layers (an image's, for a commit on top of it) for the lease's life."""
        for layer in layers:
            with self._layer_locks.hold(layer.chain_id):
                if self.layer(layer.chain_id) is None:
                    raise NoSuchImage(f"layer {layer.chain_id[:12]} (it was removed)")
                with self._lock:
                    self._pins[layer.chain_id] += 1
                    lease.chains.append(layer.chain_id)

    def layer_from_file(self, lease: Lease, parent: str | None, path: str, name: str | None = None,
                        diff_id: str | None = None) -> Layer:
        """A layer from a tar file whose diff id is not known in advance (import, commit).

        The file is read twice: once for its digest (the layer's name depends on it),
        once to apply it.
        """
        diff_id = diff_id or diff_id_of_file(path)
        source = LayerSource(name=name or path, open=lambda: open(path, "rb"), size=os.path.getsize(path))
        layer, _ = self.ensure_layer(lease, parent, diff_id, source)
        return layer

    def _create_layer(self, chain: str, parent: str | None, diff_id: str, fill: Callable[[str], int]) -> Layer:
        """Journal the layer `creating`, let `fill` make it in the driver (returning its
        size), then mark it `ready`; any failure forgets it."""
        with self.db.transaction() as c:
            c.execute("INSERT INTO layers(chain_id, parent, diff_id, size, state) VALUES (?, ?, ?, 0, 'creating')",
                      (chain, parent, diff_id))
        try:
            size = fill(chain)
            with self.db.transaction() as c:
                c.execute("UPDATE layers SET state = 'ready', size = ? WHERE chain_id = ?", (size, chain))
        except BaseException:
            self._forget(chain)
            raise
        return Layer(chain, diff_id, size, parent)

    def _apply(self, chain: str, parent: str | None, diff_id: str, source: LayerSource,
               progress: Progress | None) -> int:
        """Stream the blob into the driver while hashing it and recording its tar-split."""
        ts_out, commit = layerstream.write_tarsplit(self.tarsplit_path(chain))
        try:
            blob, tar, size = self._stream(chain, parent, source, ts_out, progress)
            _verify(source, diff_id, blob, tar)
        except BaseException:
            ts_out.close()
            raise
        commit()
        return int(size) if size is not None else 0

    def _stream(self, chain: str, parent: str | None, source: LayerSource, ts_out: IO[bytes],
                progress: Progress | None) -> tuple[layerstream.HashingReader, layerstream.HashingReader, int]:
        try:
            with source.open() as raw:
                kind, sniffed = layerstream.sniff(raw)
                blob = layerstream.HashingReader(sniffed, on_bytes=progress)
                # an uncompressed blob is the tar itself: hash its bytes once, not twice
                tar = blob if kind == "none" else layerstream.HashingReader(layerstream.decompressor(kind, blob))
                splitter = layerstream.TarSplitter(ts_out)
                tar.taps.append(splitter.feed)
                # fetching, hashing, decompressing and recording run a thread ahead of the apply
                with contextlib.closing(layerstream.ReadAhead(tar)) as ahead:
                    size = self.driver.apply_diff(chain, parent, ahead)
                    while ahead.read(layerstream.CHUNK):  # the digest covers all of the stream
                        pass
                blob.drain()
                splitter.close()
                return blob, tar, size
        except UnsafeArchive as exc:
            raise InvalidArchive(f"layer {source.name} is refused: {exc}") from None
        except (OSError, EOFError, tarfile.TarError, layerstream.zstd().ZstdError, zlib.error, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a real I/O failure (disk full...), not bad input
            raise InvalidArchive(f"layer {source.name} is not a readable tar: {exc}") from None

    def _forget(self, chain: str) -> None:
        """Remove every trace of a layer (driver layer, tar-split, row); journaled."""
        with self.db.transaction() as c:
            c.execute("UPDATE layers SET state = 'removing' WHERE chain_id = ?", (chain,))
        try:
            self.driver.remove(chain)
        except LayerNotFound:
            pass
        for path in (self.tarsplit_path(chain), self.tarsplit_path(chain) + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with self.db.transaction() as c:
            c.execute("DELETE FROM layers WHERE chain_id = ?", (chain,))

    def _release(self, lease: Lease) -> None:
        with self._lock:
            for chain in lease.chains:
                self._pins[chain] -= 1
                if self._pins[chain] <= 0:
                    del self._pins[chain]
        self.collect(reversed(lease.chains))

    def collect(self, chains: Iterable[str]) -> list[str]:
        """Remove those of `chains` (children first) that nothing uses; returns the removed."""
        removed = []
        for chain in chains:
            with self._layer_locks.hold(chain):
                with self._lock:
                    if self._pins.get(chain) or self._in_use(chain):
                        continue
                    if not self.db.query("SELECT 1 FROM layers WHERE chain_id = ?", (chain,)):
                        continue
                self._forget(chain)
                removed.append(chain)
        return removed

    def _in_use(self, chain: str) -> bool:
        return bool(self.db.query(
            "SELECT 1 FROM image_layers WHERE chain_id = ? UNION ALL SELECT 1 FROM layers WHERE parent = ? LIMIT 1",
            (chain, chain)))

    def layer_users(self, chain: str) -> list[str]:
        """Images whose layer list includes `chain` (what uses a layer)."""
        return [r[0] for r in self.db.query("SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ? "
                                            "ORDER BY image_id", (chain,))]

    def repair(self) -> list[str]:
        """Undo what a crashed engine left half done; returns the layer ids it removed."""
        removed = []
        for name in os.listdir(self.layerdata):
            if name.endswith(".tmp"):
                os.unlink(os.path.join(self.layerdata, name))
        for (chain,) in self.db.query("SELECT chain_id FROM layers WHERE state != 'ready'"):
            self._forget(chain)
            removed.append(chain)
        while True:
            orphans = [r[0] for r in self.db.query(
                "SELECT chain_id FROM layers l WHERE NOT EXISTS (SELECT 1 FROM image_layers i WHERE i.chain_id = "
                "l.chain_id) AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = l.chain_id)")]
            done = self.collect(orphans)
            if not done:
                if removed:
                    log.warning("removed %d layers a crashed or interrupted engine left: %s", len(removed),
                                ", ".join(chain[:12] for chain in removed))
                return removed
            removed += done

    def settle_lazy(self, layer: Layer) -> None:
        """Make a lazily pulled layer an ordinary one: the driver fetches whatever has not
        arrived and verifies the blob's digest and diff id; its tar-split is recorded from
        the verified blob (save and push need it); then the driver drops the lazy state.
        Nothing for an ordinary layer; a driver error for a bad one."""
        blob = self.driver.lazy_complete(layer.chain_id)
        if blob is None:
            return
        with self._layer_locks.hold(layer.chain_id):
            ts_out, commit = layerstream.write_tarsplit(self.tarsplit_path(layer.chain_id))
            try:
                with open(blob, "rb") as raw:
                    kind, sniffed = layerstream.sniff(raw)
                    tar = layerstream.HashingReader(layerstream.decompressor(kind, sniffed))
                    splitter = layerstream.TarSplitter(ts_out)
                    tar.taps.append(splitter.feed)
                    tar.drain()
                    splitter.close()
                if tar.digest() != layer.diff_id:
                    raise InvalidArchive(f"lazy layer {layer.chain_id[:12]}: its blob's tar is {tar.digest()}, "
                                         f"not the diff id {layer.diff_id}")
            except BaseException:
                ts_out.close()
                raise
            commit()
            self.driver.lazy_forget(layer.chain_id)
        log.info("lazy layer %s is now an ordinary layer", layer.chain_id[:12])

    def layer_tar_size(self, layer: Layer) -> int:
        """Length of the layer's original tar (a tar or HTTP header needs it before the data)."""
        self.settle_lazy(layer)
        ts_path = self.tarsplit_path(layer.chain_id)
        if not os.path.exists(ts_path):
            raise InvalidArchive(f"layer {layer.chain_id[:12]} has no tar-split; it cannot be exported")
        return layerstream.tarsplit_size(ts_path)

    @contextlib.contextmanager
    def open_layer_tar(self, layer: Layer) -> Iterator[IO[bytes]]:
        """The layer's original tar, byte for byte (for save and push), read from the mounted
        layer; it fails before its last byte if the result is not the layer's diff id."""
        total = self.layer_tar_size(layer)
        path = self.driver.get(layer.chain_id)
        try:
            chunks = layerstream.reassemble(self.tarsplit_path(layer.chain_id), path)
            yield layerstream.stream_of(_checked(chunks, total, layer))
        finally:
            self.driver.put(layer.chain_id)

    def layers(self) -> list[Layer]:
        rows = self.db.query("SELECT chain_id, diff_id, size, parent FROM layers WHERE state = 'ready' "
                             "ORDER BY chain_id")
        return [Layer(*r) for r in rows]

    # -- images ------------------------------------------------------------------------

    def commit(self, lease: Lease, images: list[NewImage]) -> list[tuple[str, list[str]]]:
        """Record images and move their tags in one transaction (all or nothing).

        Every layer must be pinned by `lease`. Returns (image id, [old image ids whose tag
        moved]) per image.
        """
        result = []
        pinned = set(lease.chains)
        with self.db.transaction() as c:
            for new in images:
                image_id = image_id_of(new.config_bytes)
                missing = [layer.chain_id for layer in new.layers if layer.chain_id not in pinned]
                if missing:
                    raise AssertionError(f"commit of {image_id} with unpinned layers {missing}")
                if self.db.entity_kind(image_id) is None:
                    self.db.add_entity(image_id, "image")
                    c.execute("INSERT INTO images(id, config, added) VALUES (?, ?, ?)",
                              (image_id, new.config_bytes, time.time()))
                    c.executemany("INSERT INTO image_layers(image_id, position, chain_id) VALUES (?, ?, ?)",
                                  [(image_id, i, layer.chain_id) for i, layer in enumerate(new.layers)])
            for new in images:  # second pass: a parent may come later in the same archive
                image_id = image_id_of(new.config_bytes)
                if new.parent is not None and new.parent != image_id and self.db.entity_kind(new.parent) == "image":
                    self.db.add_edge(image_id, "parent", new.parent, replace=True)
                moved = []
                for tag in new.tags:
                    old = self.db.add_edge(TAGS, tag, image_id, replace=True)
                    if old is not None:
                        moved.append(old)
                result.append((image_id, moved))
        return result

    def tag(self, ref: str, tag: str) -> str:
        image_id = self.resolve(ref)
        self.db.add_edge(TAGS, normalize_tag(tag), image_id, replace=True)
        return image_id

    def resolve(self, ref: str) -> str:
        """The image id `ref` names: a full id, a `repo[:tag]`, or a unique id prefix."""
        full = image_hex(ref)
        if full is not None:
            image_id = "sha256:" + full
            if self.db.entity_kind(image_id) == "image":
                return image_id
            raise NoSuchImage(ref)
        try:
            found = self.db.resolve_tag(normalize_tag(ref))
        except InvalidReference:
            found = None
        if found is not None:
            return found
        prefix = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if prefix and all(ch in "0123456789abcdef" for ch in prefix):
            rows = self.db.query("SELECT id FROM images WHERE substr(id, 8, ?) = ?", (len(prefix), prefix))
            if len(rows) == 1:
                return rows[0][0]
            if len(rows) > 1:
                raise Conflict(f"image id prefix {ref!r} is ambiguous ({len(rows)} images match)")
        raise NoSuchImage(ref)

    def get_image(self, ref: str) -> Image:
        image_id = self.resolve(ref)
        rows = self.db.query("SELECT config, added FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise NoSuchImage(ref)
        config_bytes, added = rows[0]
        layer_rows = self.db.query(
            "SELECT l.chain_id, l.diff_id, l.size, l.parent FROM image_layers i JOIN layers l "
            "ON l.chain_id = i.chain_id WHERE i.image_id = ? ORDER BY i.position", (image_id,))
        return Image(
            id=image_id,
            config=json.loads(config_bytes),
            config_bytes=bytes(config_bytes),
            layers=[Layer(*r) for r in layer_rows],
            parent=self.db.parent_of(image_id),
            tags=self.db.tags_of(image_id),
            added=added,
        )

    def images(self) -> list[Image]:
        ids = [r[0] for r in self.db.query("SELECT id FROM images ORDER BY added DESC, id")]
        return [self.get_image(i) for i in ids]

    def delete(self, ref: str, force: bool = False) -> list[str]:
        """Docker's rmi rules; returns the "Untagged: ..." / "Deleted: ..." lines."""
        image_id = self.resolve(ref)
        by_tag = None
        if image_hex(ref) is None:
            with contextlib.suppress(InvalidReference):
                tag = normalize_tag(ref)
                if self.db.resolve_tag(tag) == image_id:
                    by_tag = tag
        short = image_id.split(":", 1)[1][:12]
        lines: list[str] = []
        with self.db.transaction():
            tags = self.db.tags_of(image_id)
            containers = self.db.users_of_image(image_id)
            children = self.db.children_of(image_id)
            if by_tag is not None and len(tags) > 1:
                self.db.remove_edge(TAGS, by_tag)
                return [f"Untagged: {by_tag}"]
            if by_tag is None and len(tags) > 1 and not force:
                raise Conflict(f"unable to delete {short} (must be forced) - image is referenced in multiple "
                               f"repositories ({', '.join(tags)})")
            if containers and not force:
                raise ImageInUse(f"unable to delete {short} (must be forced) - image is being used by container "
                                 f"{containers[0][:12]}")
            if children and by_tag is None:
                raise ImageInUse(f"unable to delete {short} (cannot be forced) - image has dependent child images")
            for tag in tags:
                self.db.remove_edge(TAGS, tag)
                lines.append(f"Untagged: {tag}")
            if containers or children:
                return lines  # untagged only: a container or child image still needs it
            image = self.get_image(image_id)
            self.db.remove_entity(image_id)
            lines.append(f"Deleted: {image_id}")
            chains = [layer.chain_id for layer in image.layers]
            # as docker rmi does: untagged parents nothing else needs go too
            parent = image.parent
            while parent is not None and not self.db.tags_of(parent) and not self.db.children_of(parent) \
                    and not self.db.users_of_image(parent):
                above = self.get_image(parent)
                self.db.remove_entity(parent)
                lines.append(f"Deleted: {parent}")
                parent = above.parent
        self.collect(reversed(chains))
        return lines

    def history_of(self, image: Image) -> Iterator[tuple[dict[str, Any], Layer | None]]:
        """Each history entry of the config with the layer it made (None for empty layers)."""
        layers = iter(image.layers)
        history = image.config.get("history") or [{} for _ in image.layers]
        for entry in history:
            yield entry, (None if entry.get("empty_layer") else next(layers, None))

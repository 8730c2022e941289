"""pull: the workload image pulled from a loopback registry, with the page cache dropped.

The harness pushes the workload image (gzip layers) once, untimed, into a Debian
`docker-registry` on 127.0.0.1 whose storage is in the run's scratch area. Every
repetition drops the page cache first (pull is always cold), then strata's Engine pulls
the whole image (`pull`: manifest to committed image, the engine's streaming path). Then,
cold again, the same layers go through the three stages strata can see apart, per layer:
`fetch` (the blob from the registry into a file), `decompress` (gzip to a layer tar) and
`apply` (create + apply_diff into the driver); `chain:*` sum them. Peers time their own
`pull` of the same reference (bench/peers/steps.py).

Lazy pulling (Slacker, FAST '16): the harness also pushes the image -- busybox under the
workload's layers, so a command can run in it -- with strata's `push --estargz`, once and
untimed. Each round, cold, in an order drawn per round, `pull_to_first_byte` (a full pull,
then `run --rm IMAGE cat /etc/passwd`) and `lazy_pull_to_first_byte` (`pull --lazy`, then
the same run) time from the pull's start to the first byte of the command's output, and
record `bytes_fetched`: what the registry sent in that time, from its access log. Only a
driver that can serve lazy layers (aufs on FUSE) gets lazy rows; another gets an error
saying why, never a number.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine import reference
from engine.engine import Engine
from engine.images import layerstream, testimages

from .. import cache, order
from ..layers import Layers
from ..registryserver import RegistryServer
from ..rounds import Rounds
from ..workloads import Workload, busybox_layer
from . import Context, clock

log = logging.getLogger(__name__)

SCENARIO = "pull"
PHASE = ("cold", None)  # one phase: every pull starts cold
REPOSITORY = "strata-bench/pull"
LAZY_REPOSITORY = "strata-bench/pull-estargz"
STAGES = ("fetch", "decompress", "apply")
FIRST_BYTE_STEPS = ("pull_to_first_byte", "lazy_pull_to_first_byte")
COMMAND = ("cat", "/etc/passwd")


@dataclass
class PullSource:
    """The loopback registry holding the workload image, and the reference to pull; and the
    eStargz image (busybox under the workload) the first-byte steps pull."""

    server: RegistryServer
    reference: str
    layers: int
    estargz: dict[str, object] = field(default_factory=dict)

    @classmethod
    def start(cls, workload: Workload, directory: str) -> PullSource:
        """Start the registry in `directory` and push the workload image into it (untimed)."""
        os.makedirs(directory, exist_ok=True)
        image = testimages.from_layers([f"localhost/{REPOSITORY}:latest"], [la.path for la in workload.layers])
        archive = testimages.write(os.path.join(directory, "pull.tar"), [image], compression="gzip")
        server = RegistryServer(os.path.join(directory, "registry")).start()
        ref = f"{server.host}/{REPOSITORY}:latest"
        try:
            subprocess.run(
                ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-compress-format", "gzip",
                 f"docker-archive:{archive}", f"docker://{ref}"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            server.stop()
            raise RuntimeError(f"pushing the workload image to {server.host} failed: {exc.stderr.strip()}") from None
        except BaseException:
            server.stop()
            raise
        os.remove(archive)
        log.info("workload image pushed to %s", ref)
        try:
            estargz = _push_estargz(workload, directory, f"{server.host}/{LAZY_REPOSITORY}:latest")
        except BaseException:
            server.stop()
            raise
        return cls(server, ref, len(workload.layers), estargz)

    def facts(self) -> dict[str, object]:
        return {"registry": self.server.host, "reference": self.reference, "layers": self.layers,
                "estargz": self.estargz}

    def close(self) -> None:
        self.server.stop()


def _push_estargz(workload: Workload, directory: str, ref: str) -> dict[str, object]:
    """Push busybox plus the workload's layers with strata's own `push --estargz`, from an
    engine on a vfs root made for it and removed after; what run.json records of it."""
    layers = list(workload.layers)
    if workload.name != "busybox":
        layers.insert(0, busybox_layer(directory, "pull-busybox"))
    image = testimages.from_layers([ref], [la.path for la in layers])
    archive = testimages.write(os.path.join(directory, "pull-estargz.tar"), [image])
    root = tempfile.mkdtemp(prefix="estargz-engine-", dir=directory)
    parsed = reference.parse(ref)
    try:
        with Engine(root, "vfs", {}) as engine:
            engine.job("load", archive).run(check=True)
            engine.job("push", ref, options={"estargz": True}).run(check=True)
            client = engine.registry.client(parsed.registry, None, insecure=False)
            manifest = client.get_manifest(parsed.repository, parsed.ref).json
    finally:
        shutil.rmtree(root, ignore_errors=True)
        os.remove(archive)
    blobs = sum(int(d["size"]) for d in manifest["layers"]) + int(manifest["config"]["size"])
    log.info("eStargz image pushed to %s (%d layers, %d blob bytes)", ref, len(manifest["layers"]), blobs)
    return {"reference": ref, "layers": len(layers), "files": sum(la.files for la in layers),
            "bytes": sum(la.bytes for la in layers), "blob_bytes": blobs, "command": " ".join(COMMAND)}


class _FirstByte:
    """A job's stdout that notes when its first byte arrived (perf counter and wall clock,
    the registry log's clock) and keeps what was written."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.wall = 0.0
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        if data and self.at is None:
            self.at, self.wall = clock(), time.time()
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


def first_byte(engine: Engine, server: RegistryServer, ref: str, *, lazy: bool) -> tuple[float, int]:
    """Seconds from the start of `pull [--lazy] REF` to the first byte of `run --rm REF cat
    /etc/passwd`, and the bytes the registry sent in that time."""
    log_from, since = server.log_size(), time.time()
    t0 = clock()
    engine.job("pull", ref, options={"lazy": lazy}).run(check=True)
    out = _FirstByte()
    engine.job("run", ref, *COMMAND, options={"rm": True}, stdout=out).run(check=True)
    if out.at is None or not out.data.startswith(b"root:"):
        raise RuntimeError(f"`run --rm {ref} {' '.join(COMMAND)}` printed {bytes(out.data[:80])!r}, not /etc/passwd")
    return out.at - t0, server.bytes_sent(since, out.wall, log_from=log_from)


def pull_rounds(ctx: Context) -> Iterator[tuple[int, dict[str, object]]]:
    """Warm-ups (negative index) then measured rounds until precise; the cache is dropped
    before each, and the columns a pull row records."""
    rounds = ctx.rounds or Rounds(ctx.config)
    index = -ctx.config.warmup
    while index < 0 or rounds.more(PHASE, index):
        cache.drop()
        yield index, {"cache": "cold", "cache_dropped": True, "page_cache_bytes": cache.page_cache_bytes(),
                      "repetition": index}  # fmt: skip
        ctx.advance()
        index += 1
    ctx.skip(max(ctx.config.planned_repeat - index, 0))


def _stages(ctx: Context, engine: object, directory: str) -> list[dict[str, float]]:
    """Fetch, decompress and apply of every layer, one stage at a time; seconds per layer."""
    ref = reference.parse(ctx.pull_source)
    client = engine.registry.client(ref.registry, None, insecure=False)  # type: ignore[attr-defined]
    manifest = client.get_manifest(ref.repository, ref.ref)
    times = []
    with Layers(ctx.driver, "pl") as layers:
        parent = None
        for i, desc in enumerate(manifest.json.get("layers") or []):
            blob, tar = os.path.join(directory, f"blob-{i}"), os.path.join(directory, f"layer-{i}.tar")
            t0 = clock()
            with open(blob, "wb") as out:
                client.fetch_blob(ref.repository, desc["digest"], out)
                out.flush()
            t1 = clock()
            with open(blob, "rb") as src, open(tar, "wb") as out:
                shutil.copyfileobj(layerstream.decompressed(src), out, layerstream.CHUNK)
            t2 = clock()
            layer_id = layers.new_id(f"l{i}")
            ctx.driver.create(layer_id, parent)
            layers.created_layer(layer_id)
            with open(tar, "rb") as stream:
                ctx.driver.apply_diff(layer_id, parent, stream)
            t3 = clock()
            parent = layer_id
            times.append({"fetch": t1 - t0, "decompress": t2 - t1, "apply": t3 - t2})
    return times


def record(ctx: Context, seconds: float, stages: list[dict[str, float]], columns: dict[str, object]) -> None:
    """The rows of one measured round: the whole pull, each stage per layer, and its chain."""
    wl = ctx.workload
    whole = {"depth": len(wl.layers), "files": wl.files, "bytes": wl.bytes}
    ctx.row(SCENARIO, "pull", seconds=seconds, **whole, **columns)
    for stage in STAGES:
        for i, (layer, t) in enumerate(zip(wl.layers, stages, strict=True)):
            ctx.row(SCENARIO, stage, seconds=t[stage], layer=i, depth=i + 1, files=layer.files, bytes=layer.bytes,
                    **columns)  # fmt: skip
        ctx.row(SCENARIO, f"chain:{stage}", seconds=sum(t[stage] for t in stages), **whole, **columns)
def _first_byte_rows(ctx: Context, pull: PullSource, engine: Engine, index: int) -> list[tuple[str, dict[str, object]]]:
    """One repetition of each first-byte step this driver can take, cold, in the order drawn
    for the round; the image is removed (untimed) after each."""
    source, server = str(pull.estargz["reference"]), pull.server
    steps = FIRST_BYTE_STEPS if ctx.driver.lazy_unsupported() is None else FIRST_BYTE_STEPS[:1]
    rows = []
    for step in order.visit(list(steps), order=ctx.config.order, seed=ctx.config.seed, what="pull-first-byte",
                            round_=index):
        cache.drop()
        columns = {"cache": "cold", "cache_dropped": True, "page_cache_bytes": cache.page_cache_bytes(),
                   "repetition": index}  # fmt: skip
        seconds, fetched = first_byte(engine, server, source, lazy=step.startswith("lazy"))
        engine.job("rmi", source, options={"force": True}).run(check=True)
        rows.append((step, {"seconds": seconds, "bytes_fetched": fetched, **columns}))
    return rows


def run(ctx: Context) -> Iterator[None]:
    from ..peers.strata import StrataEngine

    pull = ctx.pull
    assert pull is not None, "the runner starts the registry before the pull scenario"
    engine = StrataEngine(ctx.driver.name, ctx.sandbox.root + "-engine-pull", ctx.sandbox.options)
    directory = os.path.join(ctx.sandbox.mountpoint, "pull-stages")
    if (reason := ctx.driver.lazy_unsupported()) is not None:
        ctx.error(f"pull: no lazy_pull_to_first_byte rows: driver {ctx.driver.name} cannot serve lazy layers: "
                  f"{reason}")
    try:
        for index, columns in pull_rounds(ctx):
            seconds = engine.pull(ctx.pull_source)
            engine.rmi(ctx.pull_source)
            cache.drop()
            os.makedirs(directory, exist_ok=True)
            stages = _stages(ctx, engine.engine, directory)
            shutil.rmtree(directory)
            first_bytes = _first_byte_rows(ctx, pull, engine.engine, index)
            if index < 0:
                yield
                continue
            image = pull.estargz
            for step, values in first_bytes:
                ctx.row(SCENARIO, step, depth=image["layers"], files=image["files"], bytes=image["bytes"], **values)
            record(ctx, seconds, stages, columns)
            yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        engine.close()

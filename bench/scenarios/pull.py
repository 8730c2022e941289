"""pull: the workload image pulled from a loopback registry, with the page cache dropped.

The harness pushes the workload image (gzip layers) once, untimed, into a Debian
`docker-registry` on 127.0.0.1 whose storage is in the run's scratch area. Every
repetition drops the page cache first (pull is always cold), then strata's Engine pulls
the whole image (`pull`: manifest to committed image, the engine's streaming path). Then,
cold again, the same layers go through the three stages strata can see apart, per layer:
`fetch` (the blob from the registry into a file), `decompress` (gzip to a layer tar) and
`apply` (create + apply_diff into the driver); `chain:*` sum them. Peers time their own
`pull` of the same reference (bench/peers/steps.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from engine import reference
from engine.images import layerstream, testimages

from .. import cache
from ..layers import Layers
from ..registryserver import RegistryServer
from ..rounds import Rounds
from ..workloads import Workload
from . import Context, clock

log = logging.getLogger(__name__)

SCENARIO = "pull"
PHASE = ("cold", None)  # one phase: every pull starts cold
REPOSITORY = "strata-bench/pull"
STAGES = ("fetch", "decompress", "apply")


@dataclass
class PullSource:
    """The loopback registry holding the workload image, and the reference to pull."""

    server: RegistryServer
    reference: str
    layers: int

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
        return cls(server, ref, len(workload.layers))

    def facts(self) -> dict[str, object]:
        return {"registry": self.server.host, "reference": self.reference, "layers": self.layers}

    def close(self) -> None:
        self.server.stop()


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


def run(ctx: Context) -> Iterator[None]:
    from ..peers.strata import StrataEngine

    engine = StrataEngine(ctx.driver.name, ctx.sandbox.root + "-engine-pull", ctx.sandbox.options)
    directory = os.path.join(ctx.sandbox.mountpoint, "pull-stages")
    try:
        for index, columns in pull_rounds(ctx):
            seconds = engine.pull(ctx.pull_source)
            engine.rmi(ctx.pull_source)
            cache.drop()
            os.makedirs(directory, exist_ok=True)
            stages = _stages(ctx, engine.engine, directory)
            shutil.rmtree(directory)
            if index < 0:
                yield
                continue
            record(ctx, seconds, stages, columns)
            yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        engine.close()

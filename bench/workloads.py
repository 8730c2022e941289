"""The built-in workloads: seeded generators of layer tars, and the busybox base image.

A workload is an ordered list of layer tars (bottom first) written once per run into a
scratch directory and applied again on every repetition. Generators take a seed and the
`quick` flag; the same arguments always give byte-identical tars (see graphdrivers.archive.build), so runs
on different machines measure the same bytes. The `mixed` stack is documented in the
README ("Benchmarks" section); keep both in step.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from engine.images import testimages
from graphdrivers.archive.build import LayerBuilder
from graphdrivers.whiteouts import PREFIX as WHITEOUT_PREFIX

SEED = 20240611
WORKLOADS = ("busybox", "small-files", "big-file", "deep", "mixed")
DEFAULT_DEPTH = {False: 32, True: 8}


class WorkloadError(Exception):
    """A workload could not be built (bad parameters, a missing busybox, a bad image)."""


@dataclass(frozen=True)
class Layer:
    """One layer tar of a workload: its file, regular files and bytes of file data."""

    path: str
    files: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Workload:
    name: str
    layers: tuple[Layer, ...]
    description: str

    @property
    def files(self) -> int:
        return sum(layer.files for layer in self.layers)

    @property
    def bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    def facts(self) -> dict[str, object]:
        """What run.json records about the workload."""
        return {
            "name": self.name,
            "description": self.description,
            "layers": [
                {"index": i, "files": la.files, "bytes": la.bytes, "sha256": la.sha256}
                for i, la in enumerate(self.layers)
            ],
        }


def _finish(builder: LayerBuilder, directory: str, name: str) -> Layer:
    path = os.path.join(directory, name + ".tar")
    builder.write(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return Layer(path, builder.files, builder.bytes, digest.hexdigest())


def _lognormal_size(rng: random.Random, median: int, cap: int) -> int:
    return max(0, min(cap, int(rng.lognormvariate(math.log(median), 1.2))))


def busybox_layer(directory: str, name: str = "busybox") -> Layer:
    """The busybox base layer, from the engine's offline test-image builder (the same bytes
    the engine's tests load), built from the host's static /bin/busybox."""
    if not os.path.exists(testimages.BUSYBOX):
        raise WorkloadError(f"{testimages.BUSYBOX} is missing: install the busybox-static package (make deps does)")
    built = testimages.busybox(os.path.join(directory, name))
    return layer_from_tar(built.layer_files[0])


def layer_from_tar(path: str) -> Layer:
    """A workload layer of an existing tar: its regular files (whiteouts are markers, not
    files) and bytes of file data, as the rows report them."""
    files = size = 0
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isreg() and not os.path.basename(member.name).startswith(WHITEOUT_PREFIX):
                files += 1
                size += member.size
    return Layer(path, files, size, digest.hexdigest())


def small_files(directory: str, quick: bool, seed: int = SEED) -> Workload:
    rng = random.Random(seed)
    nlayers, per_layer = (2, 200) if quick else (4, 2000)
    layers = []
    for i in range(nlayers):
        b = LayerBuilder()
        for j in range(per_layer):
            b.file(f"data/l{i}/d{j // 50:03d}/f{j:05d}", rng.randbytes(rng.randrange(0, 4097)))
        layers.append(_finish(b, directory, f"small-files-{i}"))
    return Workload(
        "small-files", tuple(layers), f"{nlayers} layers of {per_layer} files of 0-4 KiB in directories of 50"
    )


def big_file(directory: str, quick: bool, seed: int = SEED) -> Workload:
    size = (16 if quick else 256) << 20
    b = LayerBuilder()
    b.big_file("data/big.bin", size, random.Random(seed).randbytes(1 << 20))
    return Workload("big-file", (_finish(b, directory, "big-file-0"),), f"one layer holding one {size >> 20} MiB file")


def deep(directory: str, quick: bool, depth: int | None = None, seed: int = SEED) -> Workload:
    """A chain of `depth` layers; each adds files, rewrites a shared file and deletes one below."""
    depth = depth or DEFAULT_DEPTH[quick]
    if not 1 <= depth <= 127:
        raise WorkloadError(f"--depth must be between 1 and 127 (a layer stack deeper than Docker allows), got {depth}")
    rng = random.Random(seed)
    layers = []
    for i in range(depth):
        b = LayerBuilder()
        for j in range(8):
            b.file(f"deep/{i:03d}/f{j}", rng.randbytes(1024))
        b.file("deep/shared.txt", f"written by layer {i}\n".encode())
        if i > 0:
            b.whiteout(f"deep/{i - 1:03d}/f0")
        layers.append(_finish(b, directory, f"deep-{i:03d}"))
    return Workload("deep", tuple(layers), f"a chain of {depth} layers of 9 files each, each deleting one file below")


def mixed(directory: str, quick: bool, seed: int = SEED) -> Workload:
    """An image-like stack (README: "The mixed workload"): OS base, packages, app, config."""
    rng = random.Random(seed)
    scale = 10 if quick else 1
    layers = []

    base = LayerBuilder()
    base_files = []
    for j in range(1500 // scale):
        path = f"usr/lib/p{j % 40:02d}/m{j // 40:02d}/f{j:05d}"
        base.file(path, rng.randbytes(_lognormal_size(rng, 2048, 1 << 20)))
        base_files.append(path)
    for j in range(0, 1500 // scale, 20):
        base.symlink(f"usr/bin/l{j:05d}", "/" + base_files[j])
    layers.append(_finish(base, directory, "mixed-0-base"))

    pkgs = LayerBuilder()
    pkg_files = []
    for j in range(600 // scale):
        path = f"opt/pkgs/p{j % 12:02d}/f{j:04d}"
        pkgs.file(path, rng.randbytes(_lognormal_size(rng, 16 << 10, 8 << 20)))
        pkg_files.append(path)
    layers.append(_finish(pkgs, directory, "mixed-1-packages"))

    app = LayerBuilder()
    chunk = rng.randbytes(1 << 20)
    for j in range(3):
        app.big_file(f"app/blob{j}.bin", (2 if quick else 20) << 20, chunk[j:] + chunk[:j])
    for j in range(100 // scale):
        app.file(f"app/src/m{j:03d}.py", rng.randbytes(rng.randrange(512, 8193)))
    layers.append(_finish(app, directory, "mixed-2-app"))

    conf = LayerBuilder()
    for j in range(20 // scale):
        conf.file(f"etc/app/c{j:02d}.conf", rng.randbytes(rng.randrange(64, 1025)))
    for path in base_files[:10]:
        conf.whiteout(path)
    for path in pkg_files[:5]:
        conf.file(path, rng.randbytes(4096))
    layers.append(_finish(conf, directory, "mixed-3-config"))
    return Workload("mixed", tuple(layers), "image-like stack: OS base, packages, application, config (see README)")


def busybox(directory: str, quick: bool) -> Workload:
    return Workload("busybox", (busybox_layer(directory),), "one layer: static busybox with its applet links")


def big_lower_layer(directory: str, size: int, seed: int = SEED) -> Layer:
    """The layer holding the big file (`--copyup-bytes`) the exec scenario's copy-up steps write to."""
    b = LayerBuilder()
    b.big_file("bench/big.bin", size, random.Random(seed + 1).randbytes(1 << 20))
    return _finish(b, directory, f"exec-big-lower-{size}")


# big enough that a cold read stands out from the jitter of starting a container process
BOTTOM_DATA, BOTTOM_DATA_BYTES = "bench/bottom.bin", 64 << 20  # the default size (--read-bytes)


def bottom_data_layer(directory: str, size: int = BOTTOM_DATA_BYTES, seed: int = SEED) -> Layer:
    """The exec image's bottom layer: one data file that only the read steps ever read (never
    a binary that runs), so a cold read of it is cold in the container too."""
    b = LayerBuilder()
    b.big_file(BOTTOM_DATA, size, random.Random(seed + 4).randbytes(1 << 20))
    return _finish(b, directory, f"exec-bottom-data-{size}")


@dataclass(frozen=True)
class IoDataset:
    """The io scenario's image (bottom first) and what its fio jobs and harness steps use."""

    layers: tuple[Layer, Layer]
    big_bytes: int  # io/big.bin in the bottom layer
    small_files: int  # io/small/dNN/fNNNNN (4-64 KiB, multiples of 4 KiB) in the top layer
    spool_files: int  # io/spool/lower-NNNNN (1-16 KiB "mails") in the top layer


IO_BIG, IO_SMALL, IO_SPOOL = "io/big.bin", "io/small", "io/spool"


def io_dataset(directory: str, quick: bool, seed: int = SEED) -> IoDataset:
    """The io scenario's data set: a big file in one layer, many small files and a mail
    spool above it (README: "What is measured", io). Small files are whole 4 KiB blocks,
    so a 4 KiB random read never runs past a file's end."""
    rng = random.Random(seed + 2)
    big_size, nsmall, nspool = ((32 << 20), 200, 50) if quick else ((256 << 20), 2000, 500)
    bottom = LayerBuilder()
    bottom.big_file(IO_BIG, big_size, rng.randbytes(1 << 20))
    top = LayerBuilder()
    for j in range(nsmall):
        top.file(f"{IO_SMALL}/d{j // 100:02d}/f{j:05d}", rng.randbytes(4096 * rng.randint(1, 16)))
    for j in range(nspool):
        top.file(f"{IO_SPOOL}/lower-{j:05d}", rng.randbytes(rng.randrange(1024, 16385)))
    layers = (_finish(bottom, directory, "io-0-big"), _finish(top, directory, "io-1-small"))
    return IoDataset(layers, big_size, nsmall, nspool)


def pad_layer(directory: str, index: int, size: int = 0, seed: int = SEED) -> Layer:
    """A layer used to stack an image up to a given depth (rootfs depth sweep): one tiny
    file, plus `size` bytes of seeded data (`--pad-bytes`) so O(data) drivers show their
    cost against depth."""
    b = LayerBuilder()
    b.file(f"pad/{index:03d}", f"pad layer {index}\n".encode())
    if size:
        b.big_file(f"pad/{index:03d}.bin", size, random.Random(seed + 3 + index).randbytes(min(size, 1 << 20)))
    return _finish(b, directory, f"pad-{index:03d}-{size}")


def build(name: str, directory: str, *, quick: bool, depth: int | None = None, image: str | None = None) -> Workload:
    """Build workload `name` (or load `image`) into `directory`."""
    os.makedirs(directory, exist_ok=True)
    if image is not None:
        from .imagearchive import workload_from_image

        return workload_from_image(image, directory)
    makers: dict[str, Callable[[], Workload]] = {
        "busybox": lambda: busybox(directory, quick),
        "small-files": lambda: small_files(directory, quick),
        "big-file": lambda: big_file(directory, quick),
        "deep": lambda: deep(directory, quick, depth),
        "mixed": lambda: mixed(directory, quick),
    }
    if name not in makers:
        raise WorkloadError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")
    return makers[name]()

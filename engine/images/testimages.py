"""Test images built offline from the host's busybox-static, deterministically.

`busybox:latest` is /bin/busybox plus its applet links and a minimal /etc; the
multi-layer variant `strata/multi:latest` adds a layer of many small files, a layer with
one big file, and a layer that deletes something from below (whiteouts). Every tar entry
has fixed times and owners, so the same inputs always give the same layer digests and
image ids. Layers are written with the project's one tar builder
(graphdrivers.archive.build); the bench reuses these images.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
from dataclasses import dataclass, field

from graphdrivers.archive.build import LayerBuilder

from ..system import host
from .save import OutImage, OutLayer, write_docker_archive, write_oci_layout

BUSYBOX = "/bin/busybox"
MTIME = 1_700_000_000  # 2023-11-14: fixed, so ids are stable
CREATED = "2023-11-14T22:13:20Z"
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


@dataclass
class BuiltImage:
    """A test image: its config and its layer tars (files on disk)."""

    tags: list[str]
    config_bytes: bytes
    layer_files: list[str]
    parent: str | None = None
    diff_ids: list[str] = field(default_factory=list)
    # untagged images between the parent and this one, oldest first, written with it (as
    # `docker save` of a classic build has them: each image is its parent plus one step)
    intermediates: list[BuiltImage] = field(default_factory=list)

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_bytes).hexdigest()

    def out(self) -> OutImage:
        layers = [OutLayer(d, os.path.getsize(f), _opener(f)) for d, f in zip(self.diff_ids, self.layer_files,
                                                                                strict=True)]
        return OutImage(self.config_bytes, layers, list(self.tags), self.parent)


def _opener(path: str):
    return lambda: open(path, "rb")


def _write_layer(layer: LayerBuilder, path: str) -> str:
    """Write `layer` to `path`; its diff id."""
    layer.write(path)
    return _diff_id(path)


def _diff_id(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _config(diff_ids: list[str], history: list[str], cmd: list[str]) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Env": [host.DEFAULT_PATH], "Cmd": cmd},
        "history": [{"created": CREATED, "created_by": h} for h in history],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def _busybox_layer(workdir: str, salt: str) -> tuple[str, str]:
    path = os.path.join(workdir, "busybox.tar")
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    layer = LayerBuilder(mtime=MTIME)
    dirs = {"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "usr/bin", "usr/sbin", "sbin", "var"}
    dirs |= {os.path.dirname(a) for a in applets if os.path.dirname(a)}
    for d in sorted(dirs):
        layer.dir(d, {"tmp": 0o1777, "root": 0o700}.get(d, 0o755))
    with open(BUSYBOX, "rb") as f:
        layer.file("bin/busybox", f.read(), 0o755)
    for applet in sorted(set(applets) - {"bin/busybox"}):
        layer.symlink(applet, "/bin/busybox")
    layer.file("etc/passwd", _PASSWD)
    layer.file("etc/group", _GROUP)
    layer.file("etc/hostname", b"strata\n")
    layer.file("etc/motd", b"strata test image\n")
    if salt:  # a layer no other image shares (a store that has busybox must still apply it)
        layer.file("etc/strata-salt", salt.encode() + b"\n")
    return path, _write_layer(layer, path)


def busybox(workdir: str, salt: str = "") -> BuiltImage:
    """`busybox:latest`: one layer."""
    os.makedirs(workdir, exist_ok=True)
    path, diff_id = _busybox_layer(workdir, salt)
    config = _config([diff_id], ["/bin/sh -c #(nop) ADD busybox-static /"], ["sh"])
    return BuiltImage(["busybox:latest"], config, [path], None, [diff_id])


def multilayer(workdir: str, *, small_files: int = 1000, big_size: int = 100 << 20,
               salt: str = "") -> tuple[BuiltImage, BuiltImage]:
    """(busybox, `strata/multi:latest`): busybox + small files + a big file + deletions."""
    base = busybox(workdir, salt)
    small = LayerBuilder(mtime=MTIME)
    small.dir("data")
    small.dir("data/small")
    for i in range(small_files):
        small.file(f"data/small/{i:04d}", f"small file {i}\n".encode() * (1 + i % 7))
    small_path, big_path, delete_path = (os.path.join(workdir, f"{n}.tar") for n in ("small", "big", "delete"))
    small_id = _write_layer(small, small_path)
    big = LayerBuilder(mtime=MTIME)
    big.dir("data")
    # a fixed pseudo-random megabyte repeated: big, deterministic, cheap
    big.big_file("data/big.bin", big_size, random.Random(42).randbytes(1 << 20))
    big_id = _write_layer(big, big_path)
    deletes = LayerBuilder(mtime=MTIME)
    deletes.dir("data")
    deletes.dir("data/small")
    deletes.whiteout("data/small/0000")
    deletes.whiteout("data/small/0001")
    deletes.dir("etc")
    deletes.whiteout("etc/motd")
    deletes.file("data/DELETED", b"data/small/0000 data/small/0001 etc/motd\n")
    delete_id = _write_layer(deletes, delete_path)
    diff_ids = [*base.diff_ids, small_id, big_id, delete_id]
    history = ["/bin/sh -c #(nop) ADD busybox-static /",
               f"/bin/sh -c for i in $(seq {small_files}); do ...; done",
               f"/bin/sh -c head -c {big_size} /dev/urandom > /data/big.bin",
               "/bin/sh -c rm /data/small/0000 /data/small/0001 /etc/motd"]
    files = [*base.layer_files, small_path, big_path, delete_path]
    steps, parent = [], base.id
    for n in range(2, len(diff_ids)):
        step = BuiltImage([], _config(diff_ids[:n], history[:n], ["sh"]), files[:n], parent, diff_ids[:n])
        steps.append(step)
        parent = step.id
    multi = BuiltImage(["strata/multi:latest"], _config(diff_ids, history, ["sh"]), files, parent, diff_ids, steps)
    return base, multi


def write(path: str, images: list[BuiltImage], layout: str = "docker", compression: str = "gzip") -> str:
    """Write `images` as a `docker` (Docker 25+), `legacy` (Docker 1.10-24) save archive, or
    as an `oci-dir` / `oci-tar` image layout (one image, layers compressed)."""
    if layout in ("docker", "legacy"):
        # the images asked for first (tools read manifest.json's first entry), then their steps
        expanded = list({i.id: i for i in [*images, *(s for image in images for s in image.intermediates)]}.values())
        with open(path, "wb") as out:
            write_docker_archive(out, [i.out() for i in expanded], legacy=layout == "legacy")
    elif layout in ("oci-dir", "oci-tar"):
        if len(images) != 1:
            raise ValueError("an OCI layout is written for one image")
        write_oci_layout(path, images[0].out(), compression=compression, as_tar=layout == "oci-tar")
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return path


def from_layers(tags: list[str], layer_files: list[str], parent: str | None = None,
                diff_ids: list[str] | None = None) -> BuiltImage:
    """An image of the given layer tars (any content: tests build hostile ones this way);
    `diff_ids` are the plain tars' digests when the files are compressed."""
    diff_ids = diff_ids or [_diff_id(path) for path in layer_files]
    config = _config(diff_ids, [f"layer {os.path.basename(p)}" for p in layer_files], ["sh"])
    return BuiltImage(list(tags), config, list(layer_files), parent, diff_ids)

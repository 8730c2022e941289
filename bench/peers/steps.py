"""The steps a peer (or strata's Engine) is measured on, as scenario generators.

exec: per repetition, on fresh containers: `load` of the workload archive (the exec
image: busybox + the workload's layers + the big lower file), `create`, `true` (`start
-a` of a created container until /bin/true exits), `echo_first_byte` (`start -a` until
echo's first byte), `write_copyup_in_container` (`start -a` of a `dd` writing one byte
into the big lower file), and `run_rm_true` (`run --rm` end to end); then the image is
removed, untimed. strata's Engine does only load and create: each other step has one
strata source, the exec scenario's execdriver rows (`run_rm_true` there is the container
layer + mount + start + wait + unmount + remove, per execdriver), which the peers' rows
(execdriver `oci`, runtime `runc`) sit beside. pull: the same reference strata pulls,
cold. With `--cache cold` the cache is dropped before every timed step.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Protocol

from engine.images import testimages

from .. import cache
from ..scenarios import Context, Phase, Repetition, phased, phases
from ..scenarios.exec import WRITE_ARGV, _stack
from ..scenarios.pull import pull_rounds

log = logging.getLogger(__name__)

IMAGE = "localhost/strata-bench/exec:latest"
PEER_EXEC_STEPS = ("load", "create", "true", "echo_first_byte", "write_copyup_in_container", "run_rm_true")
CONTAINER_STEPS = ("true", "echo_first_byte", "write_copyup_in_container", "run_rm_true")  # run by runc


class Engineish(Protocol):
    system: str

    def load(self, archive: str) -> float: ...
    def pull(self, reference: str) -> float: ...
    def rmi(self, image: str) -> None: ...
    def create(self, image: str, *cmd: str) -> tuple[float, str]: ...
    def rm(self, container: str) -> None: ...


def exec_archive(ctx: Context) -> str:
    """The exec image as a `docker save` archive (built once per run, untimed)."""
    path = os.path.join(ctx.workdir, "exec-image.tar")
    if not os.path.exists(path):
        image = testimages.from_layers([IMAGE], [la.path for la in _stack(ctx)])
        testimages.write(path + ".part", [image], compression="gzip")
        os.rename(path + ".part", path)
    return path


def _cold(cold: bool) -> None:
    if cold:
        cache.drop()


def exec_steps(ctx: Context, peer: Engineish) -> Iterator[None]:
    archive = exec_archive(ctx)
    stack = _stack(ctx)
    common = {"depth": len(stack), "files": sum(la.files for la in stack), "bytes": sum(la.bytes for la in stack)}
    attach = hasattr(peer, "start_attached")

    def once(phase: Phase, rep: Repetition) -> None:
        rep.start()
        cold = rep.cache == "cold"
        times = {"load": peer.load(archive)}  # rep.start() dropped the cache right before
        _cold(cold)
        times["create"], cid = peer.create(IMAGE, "/bin/true")
        if attach:
            _cold(cold)
            times["true"] = peer.start_attached(cid)  # type: ignore[attr-defined]
        peer.rm(cid)
        if attach:
            _, cid = peer.create(IMAGE, "/bin/echo", "x")
            _cold(cold)
            times["echo_first_byte"] = peer.start_first_byte(cid, b"x")  # type: ignore[attr-defined]
            peer.rm(cid)
            _, cid = peer.create(IMAGE, *WRITE_ARGV)
            _cold(cold)
            times["write_copyup_in_container"] = peer.start_attached(cid)  # type: ignore[attr-defined]
            peer.rm(cid)
            _cold(cold)
            times["run_rm_true"] = peer.run_rm(IMAGE, "/bin/true")  # type: ignore[attr-defined]
        peer.rmi(IMAGE)
        if rep.measured:
            for step, seconds in times.items():
                runc = {"execdriver": "oci", "runtime": "runc"} if step in CONTAINER_STEPS else {}
                ctx.row("exec", step, seconds=seconds, **runc, **common, **rep.columns())

    yield from phased(ctx, "exec", phases(ctx.config), once)


def pull_steps(ctx: Context, peer: Engineish) -> Iterator[None]:
    wl = ctx.workload
    for index, columns in pull_rounds(ctx):
        seconds = peer.pull(ctx.pull_source)
        peer.rmi(ctx.pull_source)
        if index >= 0:
            ctx.row("pull", "pull", seconds=seconds, depth=len(wl.layers), files=wl.files, bytes=wl.bytes, **columns)
        yield


STEPS = {"exec": exec_steps, "pull": pull_steps}

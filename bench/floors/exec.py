"""The exec floors: a container runtime running a prepared bundle, and loading the archive.

Over the exec image unpacked into a plain directory, each runtime (`runc run`, `crun
run`) runs a bundle with strata's own OCI config -- no engine, no union, no monitor:

- `true`, `run_rm_true`: `run` of /bin/true until the runtime exits (it creates, starts,
  waits for and deletes the container);
- `echo_first_byte`: `run` of `/bin/echo x` until its first byte arrives on a pipe.

With peers in the run (the only time something loads the archive), `load`: the exec
image's `docker save` archive read and each layer (a plain tar, as `docker save` writes
it; a gzip one would be gunzipped by zlib) streamed into a `tar -x` started before the
clock: the primitives of a load, with no digests, no tar-split, no graph.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator

from .. import order
from ..peers.steps import exec_archive
from ..scenarios import Context, Phase, Repetition, clock, phased, phases
from ..scenarios.exec import _stack
from .pull import decompressed
from .trees import merged
from .untar import Untar

log = logging.getLogger(__name__)

SCENARIO = "exec"
RUNTIMES = ("runc", "crun")
ECHO = ["/bin/echo", "x"]
LOAD_BACKEND = "archive read + tar -x"  # + gunzip for gzip layers (docker save writes plain tars)


class Bundle:
    """Bundles of strata's own config over a plain rootfs directory, run straight by a runtime."""

    def __init__(self, runtime: str, rootfs: str, directory: str) -> None:
        from engine.execdrivers.oci import OciDriver

        self.oci = OciDriver(os.path.join(directory, "state"), {"exec.runtime": runtime})
        self.runtime = runtime
        self.directory = directory
        self.rootfs = rootfs

    @contextlib.contextmanager
    def _started(self, name: str, argv: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
        """Write the bundle (untimed), then start `RUNTIME run` on it with its stdout a pipe:
        (the process, the clock right before it was started). Once the caller is done the
        runtime must have exited 0; the bundle is gone afterwards."""
        from engine.execdrivers.base import ProcessSpec
        from engine.execdrivers.ocispec import oci_spec, process_env
        from engine.execdrivers.users import resolve

        spec = ProcessSpec(rootfs=self.rootfs, args=argv)
        user = resolve(self.rootfs, "")
        bundle = os.path.join(self.directory, name)
        os.makedirs(bundle, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(oci_spec(spec, user, process_env(spec, user)), f)
        cmd = self.oci.runtime_command("run", "--bundle", bundle, name)
        preexec = self.oci.enter_runtime_namespace if self.oci.hide_cgroup2 else None
        with tempfile.TemporaryFile() as err:
            t0 = clock()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    preexec_fn=preexec)  # fmt: skip
            try:
                yield proc, t0
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                proc.stdout.close()  # type: ignore[union-attr]
                shutil.rmtree(bundle, ignore_errors=True)
            if proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{self.runtime} run {' '.join(argv)} exited {proc.returncode}: "
                                   f"{err.read().decode(errors='replace').strip()}")  # fmt: skip

    def run(self, name: str, argv: list[str]) -> float:
        """Seconds from starting the runtime until it exited."""
        with self._started(name, argv) as (proc, t0):
            proc.stdout.read()  # type: ignore[union-attr]
            proc.wait()
            t1 = clock()
        return t1 - t0

    def first_byte(self, name: str, argv: list[str], expect: bytes) -> float:
        """Seconds from starting the runtime until the first byte of the process's stdout."""
        with self._started(name, argv) as (proc, t0):
            first = proc.stdout.read(1)  # type: ignore[union-attr]
            t1 = clock()
            rest = proc.stdout.read()  # type: ignore[union-attr]
        if first != expect:
            raise RuntimeError(f"{self.runtime} run {' '.join(argv)} printed {first + rest!r}")
        return t1 - t0


def _load(archive: str, untars: list[Untar]) -> float:
    """Read the `docker save` archive and stream each layer (gunzipped if gzip) into its tar."""
    t0 = clock()
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for path, untar in zip(manifest[0]["Layers"], untars, strict=True):
            blob = tar.extractfile(path)
            for data in decompressed(iter(lambda blob=blob: blob.read(1 << 20), b"")):  # type: ignore[union-attr]
                untar.write(data)
            untar.finish()
    return clock() - t0


def exec_(ctx: Context) -> Iterator[None]:
    stack = _stack(ctx)
    base = os.path.join(ctx.sandbox.mountpoint, "floor-exec")
    common = {"depth": len(stack), "files": sum(la.files for la in stack), "bytes": sum(la.bytes for la in stack)}
    archive = exec_archive(ctx) if ctx.config.peers else None
    try:
        rootfs = merged(stack, os.path.join(base, "rootfs"))
        bundles = []
        for runtime in RUNTIMES:
            if shutil.which(runtime) is None:
                ctx.warnings.append(f"floor: {runtime} not found; no {runtime} floor")
                continue
            bundles.append(Bundle(runtime, rootfs, os.path.join(base, runtime)))
        serial = itertools.count()

        def once(phase: Phase, rep: Repetition) -> None:
            """Each primitive timed after its own drop (cold: nothing of the image cached, as
            strata's steps), the runtimes in the order the round draws, so neither always
            runs second on what the other left warm."""
            times: list[tuple[str, str, float, dict[str, object]]] = []  # (step, backend, seconds, columns)
            if archive is not None:
                with contextlib.ExitStack() as held:
                    untars = [held.enter_context(Untar(os.path.join(base, "load", f"l{i}"))) for i in range(len(stack))]
                    rep.start()
                    times.append(("load", LOAD_BACKEND, _load(archive, untars), rep.columns()))
                shutil.rmtree(os.path.join(base, "load"))
            for bundle in order.visit(bundles, order=ctx.config.order, seed=ctx.config.seed, what="floor-exec",
                                      round_=rep.index):
                backend = f"{bundle.runtime} run"
                for step in ("run_rm_true", "true"):  # in the exec scenario's order: run_rm_true, true, echo
                    rep.start()
                    seconds = bundle.run(f"floor-{os.getpid()}-{next(serial)}", ["/bin/true"])
                    times.append((step, backend, seconds, rep.columns()))
                name = f"floor-{os.getpid()}-{next(serial)}"
                rep.start()
                times.append(("echo_first_byte", backend, bundle.first_byte(name, ECHO, b"x"), rep.columns()))
            if rep.measured:  # beside strata's oci rows; the runtime tells the two runtime floors apart
                for step, backend, seconds, columns in times:
                    ids = {"execdriver": "oci", "runtime": backend.split()[0]} if step != "load" else {}
                    row = ctx.row(SCENARIO, step, seconds=seconds, **ids, **common, **columns)
                    row.backend = backend

        yield from phased(ctx, SCENARIO, phases(ctx.config), once)
    finally:
        shutil.rmtree(base, ignore_errors=True)

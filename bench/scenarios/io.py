"""io: file I/O through each driver's container rootfs, driven by fio from the host.

The data set (`workloads.io_dataset`: a big file in the bottom layer, many small files and
a mail spool above) is an image built once per driver, untimed. Every job then runs on a
fresh container layer over it: `create_read_write`, `get`, drop the page cache (every
job starts cold, whatever `--cache` says), the job, `put`, `remove`. Each of the JOBS
runs at queue depth 1 (psync) and 16 (io_uring, else libaio), bounded by `--io-runtime`.

Around two jobs the harness times what fio cannot do: before `randwrite_4k`, the first
open of the big lower file for writing (the copy-up, `:copyup`); after
`mail_create_fsync`, unlinking the files fio created and then every lower spool file
(whiteouts on union drivers), each followed by an fsync of the spool directory
(`:delete_created`, `:delete_lower`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .. import cache, environment, fiojob, order
from ..layers import Layers
from ..rounds import Rounds
from ..workloads import IO_BIG, IO_SPOOL, IoDataset, io_dataset
from . import Context, clock
from .rootfs import build_image

SCENARIO = "io"
JOBS = ("seqread_1m", "randread_4k", "smallfiles_randread_4k", "seqwrite_1m", "randwrite_4k", "mail_create_fsync")
QUEUE_DEPTHS = (1, 16)
PHASE = ("cold", None)  # io has one phase: every job runs cold, precision judged over all of them
SIZES = {False: (256 << 20, 2000), True: (32 << 20, 200)}  # (seqwrite bytes, mail files): full, --quick
MAIL_FILE = 8 << 10  # bs and filesize of bench/fio/mail_create_fsync.fio


@dataclass(frozen=True)
class Plan:
    """What every job of the run shares: the data set, engines, runtime and sizes."""

    data: IoDataset
    engines: dict[int, str]  # queue depth -> fio ioengine
    runtime: float
    write_bytes: int
    mail_files: int

    def env(self, root: str, depth: int) -> dict[str, str]:
        """The variables the job files read (bench/fio/*.fio)."""
        return {
            "IO_ROOT": root,
            "IO_ENGINE": self.engines[depth],
            "IO_DEPTH": str(depth),
            "IO_RUNTIME": f"{max(1, round(self.runtime * 1000))}ms",
            "IO_WRITE_SIZE": str(self.write_bytes),
            "IO_MAIL_FILES": str(self.mail_files),
        }

    def files(self, job: str, m: fiojob.Metrics) -> int:
        """Files a job touched (the mail job creates one per I/O, until its runtime is up)."""
        if job == "mail_create_fsync":
            return m.io_bytes // MAIL_FILE
        return self.data.small_files if job == "smallfiles_randread_4k" else 1

    def facts(self) -> dict[str, object]:
        """run.json's `io`: what ran, with which fio, and the job files' text and sha256."""
        return {
            "fio_version": fiojob.version(),
            "engines": {str(d): e for d, e in self.engines.items()},
            "runtime_seconds": self.runtime,
            "cache": "cold: the page cache is dropped after get, before every job",
            "write_bytes": self.write_bytes,
            "mail_files": self.mail_files,
            "dataset": {
                "big_bytes": self.data.big_bytes,
                "small_files": self.data.small_files,
                "spool_files": self.data.spool_files,
                "layers": [{"files": la.files, "bytes": la.bytes, "sha256": la.sha256} for la in self.data.layers],
            },
            "job_files": fiojob.job_facts(JOBS),
        }


def _plan(ctx: Context) -> Plan:
    write_bytes, mail_files = SIZES[ctx.config.quick]
    data = io_dataset(ctx.workdir, ctx.config.quick)
    engines = {1: "psync", QUEUE_DEPTHS[1]: fiojob.async_engine()}
    return Plan(data, engines, ctx.config.io_runtime, write_bytes, mail_files)


def _copy_up(root: str) -> float:
    """The first open of the big lower file for writing: a copy-up on union drivers."""
    t0 = clock()
    os.close(os.open(os.path.join(root, IO_BIG), os.O_RDWR))
    return clock() - t0


def _delete(paths: list[str], directory: str) -> float:
    """Unlink `paths`, then fsync their directory, as a mail server expunging would."""
    t0 = clock()
    for path in paths:
        os.unlink(path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return clock() - t0


def _timed_rows(ctx: Context, step: str, seconds: float, files: int, size: int, common: dict[str, object]) -> None:
    ctx.row(SCENARIO, step, seconds=seconds, files=files, bytes=size, iops=files / seconds if seconds else None,
            bw_bytes=size / seconds if seconds and size else None, **common)  # fmt: skip


def _job(ctx: Context, plan: Plan, top: str, job: str, depth: int, index: int) -> None:
    """One job on a fresh container layer; rows only when `index` is a measured repetition,
    stamped with load1 and the CPU steal share over the job."""
    span, first = environment.Span.start(), len(ctx.rows)
    _measure(ctx, plan, top, job, depth, index)
    span.stamp(ctx.rows[first:])


def _measure(ctx: Context, plan: Plan, top: str, job: str, depth: int, index: int) -> None:
    step = f"{job}_qd{depth}"
    timed: list[tuple[str, float, int, int]] = []  # (step, seconds, files, bytes) the harness measured
    with Layers(ctx.driver, "ioc") as container:
        root = container.container(top)
        cache.drop()
        common: dict[str, object] = {
            "depth": len(plan.data.layers),
            "cache": "cold",
            "cache_dropped": True,
            "page_cache_bytes": cache.page_cache_bytes(),
            "repetition": index,
        }
        if job == "randwrite_4k":
            timed.append((f"{step}:copyup", _copy_up(root), 1, plan.data.big_bytes))
        m = fiojob.run(job, plan.env(root, depth), plan.runtime)
        if job == "mail_create_fsync":
            spool = os.path.join(root, IO_SPOOL)
            created = sorted(glob.glob(os.path.join(spool, f"{job}.*")))
            timed.append((f"{step}:delete_created", _delete(created, spool), len(created), 0))
            lower = sorted(glob.glob(os.path.join(spool, "lower-*")))
            timed.append((f"{step}:delete_lower", _delete(lower, spool), len(lower), 0))
    if index < 0:
        return
    ctx.row(SCENARIO, step, seconds=1 / m.iops, files=plan.files(job, m), bytes=m.io_bytes, iops=m.iops,
            bw_bytes=m.bw_bytes, clat_p50_ns=m.clat_p50_ns, clat_p99_ns=m.clat_p99_ns, clat_p999_ns=m.clat_p999_ns,
            runtime_s=m.runtime_s, **common)  # fmt: skip
    for name, seconds, files, size in timed:
        _timed_rows(ctx, name, seconds, files, size, common)


def run(ctx: Context) -> Iterator[None]:
    plan = _plan(ctx)
    ctx.facts["io"] = plan.facts()
    with Layers(ctx.driver, "io") as image:
        top = build_image(ctx, image, list(plan.data.layers))
        rounds = ctx.rounds or Rounds(ctx.config)
        config = ctx.config
        jobs = [(job, depth) for job in (config.io_jobs or JOBS) for depth in QUEUE_DEPTHS]
        index = -config.warmup  # negative: warm-ups, not recorded
        while index < 0 or rounds.more(PHASE, index):  # --repeat auto: until every job is precise
            for job, depth in order.visit(jobs, order=config.order, seed=config.seed, what=SCENARIO, round_=index):
                t0 = clock()
                _job(ctx, plan, top, job, depth, index)
                rounds.charge(PHASE, clock() - t0)
                ctx.advance()
                yield  # one job done, nothing of it mounted: the runner may run another driver's
            index += 1
        ctx.skip(max(config.planned_repeat - index, 0) * len(jobs))

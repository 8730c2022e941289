"""fio as the io scenario's load generator: the fixed job files, running one, its numbers.

The job files (bench/fio/<job>.fio) are part of the repository and never generated, so
two runs that record the same sha256 ran the same jobs; what varies (the rootfs path,
engine, queue depth, runtime, sizes) reaches them through environment variables, which
fio expands in job files. fio's JSON report becomes one `Metrics` per job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

JOB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fio")
IO_URING_DISABLED = "/proc/sys/kernel/io_uring_disabled"
TIMEOUT_MARGIN = 300.0  # seconds beyond the job's runtime (fsyncs, a loaded machine)


class FioError(Exception):
    """fio is missing, failed, or reported no I/O."""


@dataclass(frozen=True)
class Metrics:
    """One job's numbers, from the direction that did I/O (read or write)."""

    iops: float
    bw_bytes: float
    clat_p50_ns: int
    clat_p99_ns: int
    clat_p999_ns: int
    runtime_s: float
    io_bytes: int


def missing() -> str | None:
    """Why fio cannot run here, or None."""
    return None if shutil.which("fio") else "fio is not installed (apt-get install fio; make deps does)"


def version() -> str:
    return subprocess.run(["fio", "--version"], capture_output=True, text=True, check=False).stdout.strip()


def async_engine() -> str:
    """io_uring when fio has it and the kernel allows it, else libaio. Both keep `iodepth`
    requests in flight; with buffered I/O libaio submits synchronously, io_uring does not."""
    try:
        with open(IO_URING_DISABLED) as f:
            disabled = f.read().strip() != "0"
    except FileNotFoundError:
        disabled = False
    engines = subprocess.run(["fio", "--enghelp"], capture_output=True, text=True, check=False).stdout.split()
    return "io_uring" if "io_uring" in engines and not disabled else "libaio"


def job_file(name: str) -> str:
    return os.path.join(JOB_DIR, f"{name}.fio")


def job_facts(names: tuple[str, ...]) -> list[dict[str, str]]:
    """What run.json records of each job file: its name, sha256 and text."""
    facts = []
    for name in names:
        with open(job_file(name), "rb") as f:
            data = f.read()
        facts.append({"name": name, "file": f"bench/fio/{name}.fio", "sha256": hashlib.sha256(data).hexdigest(),
                      "text": data.decode()})  # fmt: skip
    return facts


def run(name: str, env: dict[str, str], runtime: float) -> Metrics:
    """Run job `name` with `env` (IO_ROOT, IO_ENGINE, ...) added; its metrics."""
    proc = subprocess.run(
        ["fio", "--output-format=json", job_file(name)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=runtime + TIMEOUT_MARGIN,
        check=False,
    )
    if proc.returncode != 0:
        raise FioError(f"fio job {name} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1000:]}")
    if proc.stderr.strip():
        log.info("fio job %s: %s", name, proc.stderr.strip())
    return parse(proc.stdout, name)


def parse(output: str, name: str) -> Metrics:
    """The metrics of fio's JSON report (fio may print notes before the JSON)."""
    start = output.find("{")
    if start < 0:
        raise FioError(f"fio job {name} printed no JSON report: {output.strip()[-500:]}")
    job = json.loads(output[start:])["jobs"][0]
    if job.get("error"):
        raise FioError(f"fio job {name} failed with error {job['error']}")
    side = max((job["read"], job["write"]), key=lambda d: d["io_bytes"])
    if not side["io_bytes"]:
        raise FioError(f"fio job {name} did no I/O")
    pct = side["clat_ns"]["percentile"]
    return Metrics(
        iops=float(side["iops"]),
        bw_bytes=float(side["bw_bytes"]),
        clat_p50_ns=int(pct["50.000000"]),
        clat_p99_ns=int(pct["99.000000"]),
        clat_p999_ns=int(pct["99.900000"]),
        runtime_s=side["runtime"] / 1000,
        io_bytes=int(side["io_bytes"]),
    )

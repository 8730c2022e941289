"""`strata`: the command line. It only parses arguments, builds jobs and runs them.

User mistakes (a missing image, a corrupt archive, a locked root) are one line on stderr
and a non-zero exit; only an engine bug shows a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

from graphdrivers import DEFAULT_ROOT
from graphdrivers.errors import DriverError

from ..engine import Engine
from ..errors import EngineError
from ..job import Job
from . import containers as containercli
from . import registry as registrycli


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strata", description="A Docker-style engine over pluggable graphdrivers.")
    p.add_argument("--root", default=os.environ.get("STRATA_ROOT", DEFAULT_ROOT), help="engine root directory")
    p.add_argument("--driver", "-s", default=None, help="storage driver (default: $DOCKER_DRIVER, prior, best)")
    p.add_argument("-o", "--storage-opt", action="append", default=[], metavar="KEY=VALUE", help="driver option")
    p.add_argument("-H", "--host", dest="client_host", default=None, metavar="HOST",
                   help="a running strata daemon (unix:///path, tcp://ADDR:PORT; default $STRATA_HOST) "
                   "that `run` goes through as a thin client")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = sub.add_parser("load", help="load images from a docker save archive or an OCI layout")
    c.add_argument("-i", "--input", default="-", help="archive file or OCI layout directory (default: stdin)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c = sub.add_parser("save", help="write images to a docker save archive")
    c.add_argument("-o", "--output", default=None, help="archive file (default: stdout)")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c = sub.add_parser("import", help="make a one-layer image from a rootfs tar")
    c.add_argument("file", metavar="FILE", help="tar file (plain, gzip or zstd), or - for stdin")
    c.add_argument("name", metavar="REPOSITORY[:TAG]", nargs="?")
    c = sub.add_parser("images", help="list images")
    c.add_argument("-a", "--all", action="store_true", help="include intermediate images")
    c.add_argument("--tree", action="store_true", help="show the image ancestry")
    c.add_argument("--json", action="store_true", help="JSON output")
    c = sub.add_parser("tag", help="name an image")
    c.add_argument("source", metavar="SOURCE_IMAGE")
    c.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    c = sub.add_parser("rmi", help="remove images")
    c.add_argument("-f", "--force", action="store_true")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c = sub.add_parser("inspect", help="image details as JSON")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c = sub.add_parser("history", help="the layers an image was built from")
    c.add_argument("image", metavar="IMAGE")
    c.add_argument("--json", action="store_true")
    c = sub.add_parser("info", help="engine and storage driver facts")
    c.add_argument("--json", action="store_true")
    containercli.add_parsers(sub)
    registrycli.add_parsers(sub)
    return p


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EngineError(f"-o expects KEY=VALUE, got {pair!r}")
        options[key] = value
    return options


def _job(engine: Engine, ns: argparse.Namespace) -> tuple[Job, str | None]:
    """The job for the parsed command, and the file its stdout goes to (None: our stdout)."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    cmd = ns.command
    for module in (containercli, registrycli):
        found = module.job_for(engine, ns)
        if found is not None:
            return found
    if cmd == "load":
        return engine.job("load", ns.input, stdin=sys.stdin.buffer, stdout=out, stderr=err), None
    if cmd == "save":
        if ns.output is None and sys.stdout.isatty():
            raise EngineError("refusing to write an archive to a terminal; use -o FILE or redirect stdout")
        return engine.job("save", *ns.images, stdout=out, stderr=err), ns.output
    if cmd == "import":
        args = [ns.file] + ([ns.name] if ns.name else [])
        return engine.job("import", *args, stdin=sys.stdin.buffer, stdout=out, stderr=err), None
    if cmd == "images":
        env = {"tree": str(ns.tree), "json": str(ns.json), "all": str(ns.all)}
        return engine.job("images", env=env, stdout=out, stderr=err), None
    if cmd == "tag":
        return engine.job("tag", ns.source, ns.target, stdout=out, stderr=err), None
    if cmd == "rmi":
        return engine.job("rmi", *ns.images, env={"force": str(ns.force)}, stdout=out, stderr=err), None
    if cmd == "inspect":
        return engine.job("inspect", *ns.images, stdout=out, stderr=err), None
    if cmd == "history":
        return engine.job("history", ns.image, env={"json": str(ns.json)}, stdout=out, stderr=err), None
    if cmd == "info":
        return engine.job("info", env={"json": str(ns.json)}, stdout=out, stderr=err), None
    raise EngineError(f"unknown command {cmd}")


@contextlib.contextmanager
def _progress(job: Job, enabled: bool) -> Iterator[None]:
    """A rich progress bar fed by the job's progress events (only on a terminal)."""
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True) as bar:
        task = bar.add_task("loading", total=None)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("action") == "load":
                bar.update(task, completed=event["current"], total=event["total"] or None)
            elif event.get("action") == "layer":
                bar.update(task, description=f"layer {str(event.get('diff_id', ''))[7:19]}")

        job.progress = on_event
        yield


def _run(job: Job, output: str | None, progress: bool) -> int:
    if output is None and progress:
        real, job.stdout = job.stdout, io.BytesIO()  # print results after the bar is gone
        with _progress(job, progress):
            status = job.run()
        real.write(job.stdout.getvalue())
        return status
    if output is None:
        return job.run()
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            job.stdout = f
            status = job.run()
        if status == 0:
            os.replace(tmp, output)
        return status
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if ns.client_host:  # main.py sends `-H HOST run` to the client before this parser runs
        print("strata: -H/--host is for `run` (a client of the daemon); other commands open --root directly, "
              "or use the docker CLI with DOCKER_HOST", file=sys.stderr)
        return 2
    try:
        if ns.command == "logs" and ns.follow:
            return containercli.follow_logs(lambda: Engine(ns.root, ns.driver, _options(ns.storage_opt)), ns.container)
        with Engine(ns.root, ns.driver, _options(ns.storage_opt)) as engine:
            job, output = _job(engine, ns)
            progress = ns.command == "load" and not ns.quiet and sys.stderr.isatty()
            if ns.command == "run" and not ns.detach:
                with containercli.proxy_signals(job):
                    status = _run(job, output, progress)
            else:
                status = _run(job, output, progress)
            sys.stdout.flush()
            return status
    except (EngineError, DriverError) as exc:
        print(f"strata: {exc}", file=sys.stderr)
        return getattr(exc, "status", 1) or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    from .main import main as entry

    sys.exit(entry())

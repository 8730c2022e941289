"""`strata`: the command line. It only parses arguments, builds jobs and runs them.

User mistakes (a missing image, a corrupt archive, a locked root) are one line on stderr
and a non-zero exit; only an engine bug shows a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from graphdrivers import DEFAULT_ROOT
from graphdrivers.errors import DriverError

from ..engine import Engine
from ..errors import EngineError
from ..job import BROKEN_PIPE, Job
from . import containers as containercli
from . import images as imagecli
from . import network as networkcli
from . import registry as registrycli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strata", description="A Docker-style engine over pluggable graphdrivers.")
    p.add_argument("--root", default=os.environ.get("STRATA_ROOT", DEFAULT_ROOT), help="engine root directory")
    p.add_argument("--driver", "-s", default=None, help="storage driver (default: $DOCKER_DRIVER, prior, best)")
    p.add_argument("-o", "--storage-opt", action="append", default=[], metavar="KEY=VALUE", help="driver option")
    p.add_argument("-H", "--host", dest="client_host", default=None, metavar="HOST",
                   help="a running strata daemon (unix:///path, tcp://ADDR:PORT; default $STRATA_HOST) "
                   "that `run` goes through as a thin client")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imagecli.add_parsers(sub)
    containercli.add_parsers(sub)
    registrycli.add_parsers(sub)
    networkcli.add_parsers(sub)
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
    for module in (containercli, registrycli, networkcli):
        found = module.job_for(engine, ns)
        if found is not None:
            return found
    return imagecli.job_for(engine, ns)


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


# Commands that only read: an engine opened for them leaves no trace of a driver the root
# did not hold (`strata --driver overlay2 images` on a vfs root creates nothing).
READ_ONLY = {"images", "inspect", "history", "info", "df", "system", "version", "ps", "logs", "diff", "export",
             "save", "search"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; an unknown flag is reported with its subcommand's usage, as docker does."""
    p = parser()
    ns, unknown = p.parse_known_args(argv)
    if unknown:
        [sub] = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        sub.choices[ns.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return ns


def _quiet_broken_pipe() -> int:
    """The reader of our stdout went away (`strata export c | head`): end quietly, as a process
    killed by SIGPIPE does, without Python's complaint when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    ns = _parse(argv)
    # main.py sends `-H HOST run` (or STRATA_HOST) to the client before this parser runs; any other
    # command would open --root here, not the daemon the user named: refused, not quietly local
    # (the daemon serves its own -H: a STRATA_HOST meant for clients does not concern it)
    named = "-H/--host" if ns.client_host else "STRATA_HOST" if os.environ.get("STRATA_HOST") and \
        ns.command != "daemon" else ""
    if named:
        print(f"strata: {named} is for `run` (a client of the daemon); other commands open --root directly, "
              "or use the docker CLI with DOCKER_HOST", file=sys.stderr)
        return 2
    if ns.command == "daemon":
        registrycli.configure_logging(ns.log_level)
    try:
        if ns.command == "logs" and ns.follow:
            return containercli.follow_logs(lambda: Engine(ns.root, ns.driver, _options(ns.storage_opt)), ns)
        with Engine(ns.root, ns.driver, _options(ns.storage_opt), read_only=ns.command in READ_ONLY) as engine:
            job, output = _job(engine, ns)
            progress = ns.command == "load" and not ns.quiet and sys.stderr.isatty()
            if ns.command in ("run", "exec") and not ns.detach:
                only = containercli.PROXIED if ns.command == "run" else (signal.SIGWINCH,)
                with containercli.proxy_signals(job, only), containercli.raw_terminal(ns.tty):
                    status = _run(job, output, progress)
            else:
                status = _run(job, output, progress)
            sys.stdout.flush()
            return _quiet_broken_pipe() if status == BROKEN_PIPE else status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (EngineError, DriverError) as exc:
        print(f"strata: {exc}", file=sys.stderr)
        return getattr(exc, "status", 1) or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    from .main import main as entry

    sys.exit(entry())

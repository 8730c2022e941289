"""The container jobs: create, start, wait, run, logs, stop, kill, rm, ps, container_inspect,
diff, commit, export.

`create` and `run` take the options of containers/args.py (the table the fast daemon
client also reads), so `strata run`, `strata -H HOST run` and the jobs agree on them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import IO

from graphdrivers.units import human_size

from ..errors import ContainerStartError, EngineError, NoSuchContainer, NoSuchImage
from ..execdrivers import terminal
from ..images.view import go_time, parse_time, table
from ..job import Job
from ..jobspec import CHANGE, FORMAT, INSPECT_FORMAT, JSON, JobTable, Option
from ..templates import render_all
from . import args as containerargs
from . import hostconfig, logfile
from .record import Container
from .stdio import ProcessIO, forward_input, reader_of
from .store import Containers

jobs = JobTable()
_KINDS = {"flag": bool, "value": str, "append": list}
RUN_OPTIONS = {dest: Option(_KINDS[kind], help_text, flags, default,
                            containerargs.CHOICES.get(dest))
               for flags, dest, kind, default, help_text in containerargs.OPTIONS}
STDIN_ONCE = Option(bool, "close the container's stdin when the attached client closes its own")
CONSOLE_SIZE = Option(list, "the terminal's size at start, [rows, cols] (the API's ConsoleSize)")
CREATE_OPTIONS = {**{name: option for name, option in RUN_OPTIONS.items() if name != "detach"},
                  "stdin_once": STDIN_ONCE, "console_size": CONSOLE_SIZE}
CREATE_ARGS = "IMAGE [COMMAND [ARG...]]"
WARNING = "WARNING: "  # the prefix of a create warning on the job's stderr (the API's "Warnings")


def _store(job: Job) -> Containers:
    return job.engine.containers


def _create(job: Job, keep_mounted: bool = False) -> Container:
    """Create from the job's options; Docker's warnings go to stderr as `WARNING: ...` lines."""
    o = job.options
    _pull_if_asked(job, job.args[0], o["pull"], o["platform"])
    host = hostconfig.parse(o, o["network"])
    # as `docker run -i` does, a foreground run closes the container's stdin at the end of its own
    stdin_once = o.get("stdin_once") or (job.name == "run" and o["interactive"] and not o["detach"])
    c = _store(job).create(job.args[0], job.args[1:], entrypoint=o["entrypoint"], env=o["env"],
                           workdir=o["workdir"], user=o["user"], name=o["name"], hostname=o["hostname"],
                           network=o["network"], publish=o["publish"],
                           publish_all=o["publish_all"], expose=o["expose"], aliases=o["network_alias"], ip=o["ip"],
                           auto_remove=o["rm"], keep_mounted=keep_mounted, host=host, tty=o["tty"],
                           open_stdin=o["interactive"], stdin_once=stdin_once, restart_policy=o["restart"],
                           console_size=o.get("console_size") or [], platform=o["platform"])
    for warning in host.warnings:
        job.error_line(f"{WARNING}{warning}")
    return c


def _pull_if_asked(job: Job, ref: str, policy: str, platform: str) -> None:
    """docker run's --pull: fetch the image when missing (or always; `lazy`: when missing,
    a lazy pull); progress goes to stderr."""
    if policy == "never":
        return
    if policy in ("missing", "lazy"):
        try:
            job.engine.graph.get_image(ref)
            return
        except NoSuchImage:
            job.error_line(f"Unable to find image '{ref}' locally")
    job.engine.job("pull", ref, options={"platform": platform, "lazy": policy == "lazy"}, stdout=job.stderr,
                   stderr=io.BytesIO()).run(check=True)  # its error is ours


@jobs.job("create", args=CREATE_ARGS, options=CREATE_OPTIONS, help="create a container")
def create(job: Job) -> int:
    """`create IMAGE [CMD...]`: prints the new container's id."""
    job.write(_create(job).id + "\n")
    return 0


@jobs.job("start", args="CONTAINER...", help="start containers")
def start(job: Job) -> int:
    """`start CONTAINER...`"""
    store = _store(job)
    for ref in job.args:
        store.start(store.get(ref))
        job.write(ref + "\n")
    return 0


@jobs.job("wait", args="CONTAINER...", help="wait for containers to stop; print their exit codes")
def wait(job: Job) -> int:
    """`wait CONTAINER...`: blocks until each stops; prints its exit code."""
    store = _store(job)
    for ref in job.args:
        job.write(f"{store.wait(store.get(ref)).code}\n")
    return 0


@jobs.job("run", args=CREATE_ARGS, options=RUN_OPTIONS, help="create and start a container")
def run(job: Job) -> int:
    """`run IMAGE [CMD...]`: create + start; then either print the id (detach) or
    stream the output until the process ends and return its exit status (rm: remove)."""
    store = _store(job)
    detach = job.options["detach"]
    auto_remove = job.options["rm"]
    c = _create(job, keep_mounted=True)
    if detach:
        store.start(c)
        job.write(c.id + "\n")
        return 0
    try:
        handle = store.start(c)
    except ContainerStartError as exc:
        job.error_line(f"Error: {exc}")
        if auto_remove and os.path.isdir(c.paths(store.dir)[0]):
            store.remove(store.get(c.id), force=True)
        return exc.status
    stdio = store.process_io(c)
    if stdio is not None:
        _feed_stdin(job, stdio)
    # A caller (the CLI's signal proxy) may append signals here; they go to the container,
    # except SIGWINCH: the caller's terminal changed size, so the container's follows.
    pending: list[int] = getattr(job, "pending_signals", [])

    def ended(timeout: float) -> bool:
        while pending:
            sig = pending.pop(0)
            if sig == signal.SIGWINCH:
                follow_size(job, stdio)
                continue
            with contextlib.suppress(EngineError):
                handle.kill(sig)
        return handle.wait(timeout) is not None

    statuses = []  # store.wait records the end (and removes the container when --rm) before the last read
    logfile.copy(store.log_path(c), _emitter(job), logfile.Selection(), ended=ended,
                 written=lambda: statuses.append(store.wait(c)))
    status = statuses[0]
    if status.error:
        job.error_line(f"Error: {status.error}")
    return status.code


def _feed_stdin(job: Job, stdio: ProcessIO) -> None:
    """The job's stdin to the container while it runs (a thread: reading blocks); a terminal
    of the job's own sets the container's terminal size."""
    follow_size(job, stdio)
    read = reader_of(job.stdin)

    def feed() -> None:
        with contextlib.suppress(OSError, ValueError):
            forward_input(read, stdio, detach=b"", close_at_eof=True)

    threading.Thread(target=feed, name=f"stdin-{job.name}", daemon=True).start()


def follow_size(job: Job, stdio: ProcessIO | None) -> None:
    """Give the process's terminal the size of the job's stdin, when that is a terminal."""
    if stdio is None or not stdio.tty:
        return
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        if os.isatty(job.stdin.fileno()):
            stdio.resize(*terminal.get_size(job.stdin.fileno()))


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
    dst.flush()


LOGS_OPTIONS = {
    "follow": Option(bool, "keep streaming until the container stops (or --until passes)", ("-f", "--follow")),
    "tail": Option(str, "only the last N lines (default all)", ("-n", "--tail"), "all"),
    "since": Option(str, "lines from this time on: unix seconds, RFC 3339, or a duration before now (10m)",
                    ("--since",), ""),
    "until": Option(str, "lines up to this time: unix seconds, RFC 3339, or a duration before now (10m)",
                    ("--until",), ""),
    "timestamps": Option(bool, "show each line's time (RFC 3339 with nanoseconds)", ("-t", "--timestamps")),
}


def logs_selection(options: dict) -> logfile.Selection:
    return logfile.selection(options["tail"], options["since"], options["until"], options["timestamps"])


@jobs.job("logs", args="CONTAINER", help="a container's output", options=LOGS_OPTIONS)
def logs(job: Job) -> int:
    """`logs CONTAINER`: its lines in the order they came, as Docker's json-file driver
    keeps them (stdout to stdout, stderr to stderr); follow: keep streaming until the
    container stops or --until passes."""
    (ref,) = job.args
    store = _store(job)
    c = store.refresh(store.get(ref))
    sel = logs_selection(job.options)
    gone: threading.Event = getattr(job, "cancelled", None) or threading.Event()  # the API's reader left

    def ended(timeout: float) -> bool:
        handle = store.handle(c)
        if handle is not None:
            handle.wait(timeout)
        else:
            time.sleep(timeout)
        return gone.is_set() or not store.refresh(store.get(c.id)).state.running

    follow = job.options["follow"] and c.state.running
    logfile.copy(store.log_path(c), _emitter(job), sel, ended=ended if follow else None,
                 written=lambda: logfile.wait_written(c.monitor))
    return 0


def _emitter(job: Job) -> Callable[[str, bytes], None]:
    """Lines to the job's stdout or stderr, as their stream was."""
    def emit(stream: str, data: bytes) -> None:
        out = job.stdout if stream == "stdout" else job.stderr
        out.write(data)
        out.flush()

    return emit


STOP_TIME = Option(float, "seconds before SIGKILL (default: its --stop-timeout, else 10)", ("-t", "--time"))


@jobs.job("stop", args="CONTAINER...", help="SIGTERM, then SIGKILL after a timeout", options={"time": STOP_TIME})
def stop(job: Job) -> int:
    """`stop CONTAINER...` (time: seconds before SIGKILL, default the container's stop timeout)."""
    store = _store(job)
    for ref in job.args:
        store.stop(store.get(ref), job.options["time"])
        job.write(ref + "\n")
    return 0


@jobs.job("kill", args="CONTAINER...", help="signal containers", options={
    "signal": Option(str, "the signal, by name or number (default KILL)", ("-s", "--signal"), "KILL")})
def kill(job: Job) -> int:
    """`kill CONTAINER...` (signal, default KILL)."""
    store = _store(job)
    sig = hostconfig.signal_number(job.options["signal"], "signal")
    for ref in job.args:
        store.kill(store.get(ref), sig)
        job.write(ref + "\n")
    return 0


@jobs.job("rm", args="CONTAINER...", help="remove containers", options={
    "force": Option(bool, "kill a running container first", ("-f", "--force"))})
def rm(job: Job) -> int:
    """`rm CONTAINER...` (force: kill a running one first)."""
    store = _store(job)
    status = 0
    for ref in job.args:
        try:
            store.remove(store.get(ref), force=job.options["force"])
            job.write(ref + "\n")
        except EngineError as exc:
            job.error_line(f"Error: {exc}")
            status = 1
    return status


def human_duration(seconds: float) -> str:
    """Docker's HumanDuration: "3 seconds", "About a minute", "5 minutes", "2 hours"..."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} second{'s' if int(seconds) != 1 else ''}"
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 2:
        return "About an hour"
    if hours < 48:
        return f"{int(hours)} hours"
    return f"{int(hours / 24)} days"


def _since(text: str, now: dt.datetime) -> str:
    when = parse_time(text)
    return human_duration((now - when).total_seconds()) if when else ""


def status_text(c: Container, now: dt.datetime) -> str:
    s = c.state
    if s.running:
        return f"Up {_since(s.started_at, now)}" + (" (Paused)" if s.paused else "")
    if s.status == "exited":
        return f"Exited ({s.exit_code}) {_since(s.finished_at, now)} ago"
    return "Created"


def _network_summary(job: Job, c: Container) -> dict:
    """`Ports` (Docker's list form) and `NetworkSettings.Networks` of a listed container."""
    settings = job.engine.network.settings(c.id, c.network, c.exposed)
    listed = []
    for key, bindings in settings["Ports"].items():
        port, proto = key.split("/")
        for b in bindings or [{}]:
            entry = {"PrivatePort": int(port), "Type": proto}
            if b:
                entry.update({"IP": b["HostIp"], "PublicPort": int(b["HostPort"])})
            listed.append(entry)
    return {"Ports": listed, "NetworkSettings": {"Networks": settings["Networks"]}}


@jobs.job("ps", help="list containers", options={
    "all": Option(bool, "stopped containers too", ("-a", "--all")),
    "last": Option(int, "the N most recently created containers, stopped ones too", ("-n", "--last"), -1),
    "latest": Option(bool, "the most recently created container, stopped or not", ("-l", "--latest")),
    "size": Option(bool, "the size of each container's changes and of its whole filesystem", ("-s", "--size")),
    "quiet": Option(bool, "ids only", ("-q", "--quiet")), "json": JSON, "format": FORMAT})
def ps(job: Job) -> int:
    """`ps` (all: stopped ones too; last N / latest: the N (1) newest, stopped or not, as
    docker's -n and -l; size: SizeRw and SizeRootFs, which walk each layer; quiet: ids only;
    json; format: a template per row)."""
    o = job.options
    last = 1 if o["latest"] and o["last"] < 1 else o["last"]
    found = _store(job).list(include_stopped=o["all"] or last > 0)
    if last > 0:
        found = found[:last]  # newest first
    if o["quiet"]:
        job.write("".join(c.short_id + "\n" for c in found))
        return 0
    sizes = {c.id: _store(job).sizes(c) for c in found} if o["size"] else {}
    if o["json"]:
        job.write_json([{"Id": c.id, "Names": ["/" + c.name], "Image": c.image_ref, "ImageID": c.image,
                         "Command": " ".join(c.args), "Created": c.created, "State": c.state.status,
                         "Status": status_text(c, dt.datetime.now(dt.UTC)), "ExitCode": c.state.exit_code,
                         "HostConfig": {"NetworkMode": c.network}, "Labels": c.labels, **_network_summary(job, c),
                         **({"SizeRw": sizes[c.id][0], "SizeRootFs": sizes[c.id][1]} if sizes else {})}
                        for c in found])  # fmt: skip
        return 0
    now = dt.datetime.now(dt.UTC)
    rows = [_ps_row(c, now, _network_summary(job, c)["Ports"], sizes.get(c.id)) for c in found]
    if o["format"]:
        job.write(render_all(o["format"], rows, headers=PS_HEADERS))
        return 0
    columns = ("ID", "Image", "Command", "RunningFor", "Status", "Names") + (("Size",) if sizes else ())
    job.write(table([tuple(PS_HEADERS[name] for name in columns), *(tuple(r[name] for name in columns) for r in rows)]))
    return 0


# The fields of docker's container rows for --format, and their column names in a table.
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "Status": "STATUS", "State": "STATE", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}


def _ports_text(listed: list[dict]) -> str:
    """docker ps's PORTS: `0.0.0.0:8080->80/tcp, 443/tcp`."""
    return ", ".join(f"{p['IP']}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}" if "PublicPort" in p
                     else f"{p['PrivatePort']}/{p['Type']}" for p in listed)


def _size_text(sizes: tuple[int, int] | None) -> str:
    """docker ps's SIZE: `2B (virtual 1.2MB)`; without --size, the docker CLI's 0B."""
    if sizes is None:
        return "0B"
    return f"{human_size(sizes[0])} (virtual {human_size(sizes[1])})"


def _ps_row(c: Container, now: dt.datetime, listed_ports: list[dict],
            sizes: tuple[int, int] | None = None) -> dict[str, str]:
    command = " ".join(c.args)
    command = f'"{command[:17]}…"' if len(command) > 20 else f'"{command}"'
    return {"ID": c.short_id, "Image": c.image_ref, "Command": command, "CreatedAt": go_time(c.created),
            "RunningFor": f"{_since(c.created, now)} ago", "Ports": _ports_text(listed_ports),
            "Status": status_text(c, now),
            "State": c.state.status, "Size": _size_text(sizes), "Names": c.name,
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())), "Mounts": "",
            "Networks": c.network, "LocalVolumes": "0"}


@jobs.job("container_inspect", args="CONTAINER...", help="container details as JSON",
          options={"format": INSPECT_FORMAT})
def container_inspect(job: Job) -> int:
    """`container_inspect CONTAINER...`: Docker-like JSON list of those found; the first
    missing one is raised (a typed NoSuchContainer, which the API answers with 404)."""
    store = _store(job)
    job.write_json_each(job.args, lambda ref: store.inspect(store.get(ref)), NoSuchContainer, job.options["format"])
    return 0


CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}  # Docker's archive.ChangeType values


@jobs.job("diff", args="CONTAINER", options={"json": JSON}, help="the files a container changed")
def diff(job: Job) -> int:
    """`diff CONTAINER`: the layer's changes as Docker prints them ("A /path"), or as the
    API's JSON (json: Kind 0 changed, 1 added, 2 deleted)."""
    (ref,) = job.args
    store = _store(job)
    changes = store.changes(store.get(ref))
    if job.options["json"]:
        job.write_json([{"Path": change.path, "Kind": CHANGE_KINDS[change.kind]} for change in changes])
        return 0
    for change in changes:
        job.write(f"{change.kind} {change.path}\n")
    return 0



@jobs.job("commit", args="CONTAINER [REPOSITORY[:TAG]]", help="make an image of a container's changes",
          options={"message": Option(str, "commit message", ("-m", "--message"), ""),
                   "author": Option(str, "author", ("-a", "--author"), ""),
                   "change": CHANGE,
                   "pause": Option(str, "pause a running container during the commit (true, false)",
                                   ("-p", "--pause"), "true", ("true", "false"))})
def commit(job: Job) -> int:
    """`commit CONTAINER [REPOSITORY[:TAG]]` (message, author, change, pause): prints the image id."""
    args = job.args
    store = _store(job)
    image_id = store.commit(store.get(args[0]), args[1] if len(args) > 1 else "",
                            message=job.options["message"], author=job.options["author"],
                            changes=job.options["change"], pause=job.options["pause"] == "true")
    job.write(image_id + "\n")
    return 0


@jobs.job("export", args="CONTAINER", help="a container's filesystem as a tar")
def export(job: Job) -> int:
    """`export CONTAINER`: the container's filesystem as a tar on stdout."""
    (ref,) = job.args
    store = _store(job)
    stream = store.export(store.get(ref))
    try:
        _copy(stream, job.stdout)
    finally:
        stream.close()
    return 0

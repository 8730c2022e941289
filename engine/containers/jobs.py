"""The container jobs: create, start, wait, run, logs, stop, kill, rm, ps, container_inspect,
diff, commit, export.

Options travel in the job's environment as Docker's engine jobs carried them: `name`,
`env` (a JSON list of KEY=VALUE), `workdir`, `user`, `hostname`, `network`, `rm`,
`detach`, `follow`, `force`, `all`, `time`, `signal`, `json`, `quiet`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import time
from typing import IO, TYPE_CHECKING

from ..errors import EngineError, UsageError
from ..images.view import parse_time
from ..job import Job
from .record import Container
from .store import Containers, ContainerStartError

if TYPE_CHECKING:
    from ..engine import Engine

FOLLOW_POLL = 0.05  # seconds between looks at the log files while following


def register(engine: Engine) -> None:
    engine.containers = Containers(engine, getattr(engine, "exec_options", {}))
    for name, handler in (
        ("create", create), ("start", start), ("wait", wait), ("run", run), ("logs", logs), ("stop", stop),
        ("kill", kill), ("rm", rm), ("ps", ps), ("container_inspect", container_inspect), ("diff", diff),
        ("commit", commit), ("export", export),
    ):  # fmt: skip
        engine.register(name, handler)


def _store(job: Job) -> Containers:
    return job.engine.containers


def _args(job: Job, low: int, high: int | None, usage: str) -> list[str]:
    if len(job.args) < low or (high is not None and len(job.args) > high):
        raise UsageError(f"usage: {job.name} {usage}")
    return job.args


def _create(job: Job, keep_mounted: bool = False) -> Container:
    args = _args(job, 1, None, "IMAGE [COMMAND [ARG...]]")
    env = job.getenv_json("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise UsageError("env must be a JSON list of KEY=VALUE strings")
    return _store(job).create(
        args[0],
        args[1:],
        env=env,
        workdir=job.getenv("workdir") or "",
        user=job.getenv("user") or "",
        name=job.getenv("name") or "",
        hostname=job.getenv("hostname") or "",
        network=job.getenv("network") or "none",
        auto_remove=job.getenv_bool("rm"),
        keep_mounted=keep_mounted,
    )


def create(job: Job) -> int:
    """`create IMAGE [CMD...]`: prints the new container's id."""
    job.write(_create(job).id + "\n")
    return 0


def start(job: Job) -> int:
    """`start CONTAINER...`"""
    store = _store(job)
    for ref in _args(job, 1, None, "CONTAINER..."):
        store.start(store.get(ref))
        job.write(ref + "\n")
    return 0


def wait(job: Job) -> int:
    """`wait CONTAINER...`: blocks until each stops; prints its exit code."""
    store = _store(job)
    for ref in _args(job, 1, None, "CONTAINER..."):
        job.write(f"{store.wait(store.get(ref)).code}\n")
    return 0


def run(job: Job) -> int:
    """`run IMAGE [CMD...]`: create + start; then either print the id (env detach) or
    stream the output until the process ends and return its exit status (env rm: remove)."""
    store = _store(job)
    detach = job.getenv_bool("detach")
    auto_remove = job.getenv_bool("rm")
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
    out_path, err_path = store.log_paths(c)
    # A caller (the CLI's signal proxy) may append signals here; they go to the container.
    pending: list[int] = getattr(job, "pending_signals", [])
    with open(out_path, "rb") as out, open(err_path, "rb") as err:
        while handle.wait(FOLLOW_POLL) is None:
            while pending:
                with contextlib.suppress(EngineError):
                    handle.kill(pending.pop(0))
            _copy(out, job.stdout)
            _copy(err, job.stderr)
        status = store.wait(c)  # records the end (and removes the container when --rm)
        _copy(out, job.stdout)
        _copy(err, job.stderr)
    if status.error:
        job.error_line(f"Error: {status.error}")
    return status.code


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
    dst.flush()


def logs(job: Job) -> int:
    """`logs CONTAINER` (env follow: keep streaming until the container stops)."""
    (ref,) = _args(job, 1, 1, "CONTAINER")
    store = _store(job)
    c = store.get(ref)
    out_path, err_path = store.log_paths(c)
    follow = job.getenv_bool("follow")
    with _open_or_empty(out_path) as out, _open_or_empty(err_path) as err:
        _copy(out, job.stdout)
        _copy(err, job.stderr)
        while follow and store.refresh(c).state.running:
            handle = store.handle(c)
            if handle is not None:
                handle.wait(FOLLOW_POLL)
            else:
                time.sleep(FOLLOW_POLL)
            _copy(out, job.stdout)
            _copy(err, job.stderr)
        _copy(out, job.stdout)
        _copy(err, job.stderr)
    return 0


def _open_or_empty(path: str) -> IO[bytes]:
    """A log file, or an empty one for a container that never started."""
    if not os.path.exists(path):
        return open(os.devnull, "rb")
    return open(path, "rb")


def stop(job: Job) -> int:
    """`stop CONTAINER...` (env time: seconds before SIGKILL, default 10)."""
    store = _store(job)
    try:
        timeout = float(job.getenv("time") or 10)
    except ValueError:
        raise UsageError(f"stop: time must be a number of seconds, got {job.getenv('time')!r}") from None
    for ref in _args(job, 1, None, "CONTAINER..."):
        store.stop(store.get(ref), timeout)
        job.write(ref + "\n")
    return 0


def _signal(name: str) -> int:
    name = name.upper().removeprefix("SIG")
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals["SIG" + name])
    except KeyError:
        raise UsageError(f"unknown signal {name!r}") from None


def kill(job: Job) -> int:
    """`kill CONTAINER...` (env signal, default KILL)."""
    store = _store(job)
    sig = _signal(job.getenv("signal") or "KILL")
    for ref in _args(job, 1, None, "CONTAINER..."):
        store.kill(store.get(ref), sig)
        job.write(ref + "\n")
    return 0


def rm(job: Job) -> int:
    """`rm CONTAINER...` (env force: kill a running one first)."""
    store = _store(job)
    status = 0
    for ref in _args(job, 1, None, "CONTAINER..."):
        try:
            store.remove(store.get(ref), force=job.getenv_bool("force"))
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


def _status_text(c: Container, now: dt.datetime) -> str:
    s = c.state
    if s.running:
        return f"Up {_since(s.started_at, now)}"
    if s.status == "exited":
        return f"Exited ({s.exit_code}) {_since(s.finished_at, now)} ago"
    return "Created"


def ps(job: Job) -> int:
    """`ps` (env all: stopped ones too; quiet: ids only; json)."""
    _args(job, 0, 0, "")
    found = _store(job).list(include_stopped=job.getenv_bool("all"))
    if job.getenv_bool("quiet"):
        job.write("".join(c.short_id + "\n" for c in found))
        return 0
    if job.getenv_bool("json"):
        job.write_json([{"Id": c.id, "Names": ["/" + c.name], "Image": c.image_ref, "ImageID": c.image,
                         "Command": " ".join(c.args), "Created": c.created, "State": c.state.status,
                         "Status": _status_text(c, dt.datetime.now(dt.UTC)), "ExitCode": c.state.exit_code}
                        for c in found])  # fmt: skip
        return 0
    now = dt.datetime.now(dt.UTC)
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for c in found:
        command = " ".join(c.args)
        command = f'"{command[:17]}…"' if len(command) > 20 else f'"{command}"'
        rows.append((c.short_id, c.image_ref, command, f"{_since(c.created, now)} ago", _status_text(c, now), c.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    job.write("".join("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows))
    return 0


def container_inspect(job: Job) -> int:
    """`container_inspect CONTAINER...`: Docker-like JSON list."""
    store = _store(job)
    found, status = [], 0
    for ref in _args(job, 1, None, "CONTAINER..."):
        try:
            found.append(store.inspect(store.get(ref)))
        except EngineError as exc:
            job.error_line(f"Error: {exc}")
            status = 1
    job.write_json(found)
    return status


def diff(job: Job) -> int:
    """`diff CONTAINER`: the layer's changes as Docker prints them ("A /path")."""
    (ref,) = _args(job, 1, 1, "CONTAINER")
    store = _store(job)
    for change in store.changes(store.get(ref)):
        job.write(f"{change.kind} {change.path}\n")
    return 0


def commit(job: Job) -> int:
    """`commit CONTAINER [REPOSITORY[:TAG]]` (env message, author): prints the image id."""
    args = _args(job, 1, 2, "CONTAINER [REPOSITORY[:TAG]]")
    store = _store(job)
    image_id = store.commit(store.get(args[0]), args[1] if len(args) > 1 else "",
                            message=job.getenv("message") or "", author=job.getenv("author") or "")
    job.write(image_id + "\n")
    return 0


def export(job: Job) -> int:
    """`export CONTAINER`: the container's filesystem as a tar on stdout."""
    (ref,) = _args(job, 1, 1, "CONTAINER")
    store = _store(job)
    stream = store.export(store.get(ref))
    try:
        _copy(stream, job.stdout)
    finally:
        stream.close()
    return 0

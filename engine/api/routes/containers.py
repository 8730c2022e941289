"""Container endpoints: create, start, attach, wait, logs, stop, kill, delete, list,
inspect, changes, commit, export."""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from ...containers import logfile
from ...containers.jobs import WARNING, logs_selection
from ...containers.record import Container
from ...containers.stdio import ProcessIO, detach_sequence, forward_input
from ...engine import Engine
from ...errors import EngineError, NoSuchContainer, UsageError
from ...images.view import unix_time
from .. import createbody, hangup, jobio, mux, schema
from ..hangup import Cancellable
from ..http import ApiError, Reply, Request, Router

AWAIT_CHECK = 1.0  # seconds between looks at the client while a request waits for a container's event
ATTACH_DRAIN_TIMEOUT = 30.0  # how long wait lets attach streams finish copying output
RAW_STREAM = "application/vnd.docker.raw-stream"
MUX_STREAM = "application/vnd.docker.multiplexed-stream"
T = TypeVar("T")


# The fields of Docker's container inspect that strata has no other value for; the docker
# CLI reads them. (NetworkSettings is the networkdriver's, in every container's inspect.)
_INSPECT_DEFAULTS: dict[str, Any] = {
    "Mounts": [], "RestartCount": 0, "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
    "AppArmorProfile": "", "ExecIDs": None,
}


class _Attachments:
    """Which containers have an attach stream copying their output.

    The wait endpoint records a container's end, which removes an --rm container and its
    log files; it must not do so before every attach stream has copied the last output.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count: dict[str, int] = {}

    def begin(self, container_id: str) -> None:
        with self._cond:
            self._count[container_id] = self._count.get(container_id, 0) + 1

    def end(self, container_id: str) -> None:
        with self._cond:
            self._count[container_id] -= 1
            if not self._count[container_id]:
                del self._count[container_id]
            self._cond.notify_all()

    def drained(self, container_id: str, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: container_id not in self._count, timeout)


def add_routes(router: Router, engine: Engine) -> None:
    store = engine.containers
    attachments = _Attachments()

    def container(req: Request) -> Container:
        return store.get(req.params["id"])

    def inspected(req: Request) -> dict[str, Any]:
        """The container's inspect JSON, through the job (a missing container is a 404)."""
        return jobio.run(engine, "container_inspect", req.params["id"]).json()[0]

    @router.route("POST", "/containers/create")
    def create(req: Request) -> Reply:
        body = req.json()
        schema.check_container_config(body)
        image, cmd, options = createbody.options(body, req.arg("name") or "")
        options["pull"] = "never"  # Docker's create answers 404 for a missing image; the client pulls
        options["platform"] = req.arg("platform") or ""
        job = jobio.run(engine, "create", image, *cmd, options=options)
        warnings = [line.removeprefix(WARNING) for line in job.stderr.getvalue().decode().splitlines()
                    if line.startswith(WARNING)]
        return Reply(201, {"Id": job.stdout.getvalue().decode().strip(), "Warnings": warnings})

    @router.route("POST", "/containers/{id}/start")
    def start(req: Request) -> Reply:
        c = inspected(req)
        if c["State"]["Running"]:
            return Reply(304, None)
        jobio.run(engine, "start", c["Id"])
        return Reply(204, None)

    @router.route("POST", "/containers/{id}/wait")
    def wait(req: Request) -> Reply:
        """Headers go out at once and the body when the container stops: the docker CLI waits
        for this response to begin before it starts the container (as dockerd's wait does).
        next-exit and removed on a container that is not running wait for its next run."""
        c = container(req)
        condition = req.arg("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise ApiError(400, f"invalid condition {condition!r}")
        gone = threading.Event()

        def body() -> Iterator[bytes]:
            try:
                current = _await_run(c, gone) if condition != "not-running" else c
                if current is None:
                    return  # the client went away first
                handle = store.handle(current) if current.state.running else None
                if handle is not None:
                    handle.wait(None)  # the process ended; its output may still be in flight
                attachments.drained(c.id, ATTACH_DRAIN_TIMEOUT)
                status = store.wait(current)
                if condition == "removed" and not _await(lambda: not _exists(c.id), gone):
                    return
                result = {"StatusCode": status.code, "Error": {"Message": status.error} if status.error else None}
            except EngineError as exc:
                result = {"StatusCode": -1, "Error": {"Message": str(exc)}}
            yield json.dumps(result).encode() + b"\n"

        return Reply(200, stream=Cancellable(body(), gone))

    def _await_run(c: Container, gone: threading.Event) -> Container | None:
        """`c` running: as it is. Not running (created, or exited: dockerd's attach and
        next-exit are about the next run): block until a start after `c` was read, or a
        failed one; None if the client hangs up first. Sleeps until an event, not polling."""
        if c.state.running:
            return c
        before = (c.state.started_at, c.state.finished_at)

        def ran() -> Container | None:
            current = store.get(c.id)
            return current if (current.state.started_at, current.state.finished_at) != before else None

        return _await(ran, gone)

    def _await(ready: Callable[[], T], gone: threading.Event) -> T | None:
        """`ready()`'s first true value, looked for again after each event (and each
        AWAIT_CHECK seconds); None when the client hangs up first."""
        while True:
            mark = time.time_ns()
            if found := ready():
                return found
            if gone.is_set():
                return None
            engine.events.wait_newer(mark, AWAIT_CHECK)

    def _exists(container_id: str) -> bool:
        try:
            store.get(container_id)
            return True
        except NoSuchContainer:
            return False

    @router.route("POST", "/containers/{id}/attach")
    def attach(req: Request) -> Reply:
        c = container(req)
        if not req.flag("stream") and not req.flag("logs"):
            raise ApiError(400, "attach needs stream=1 or logs=1")
        want_in, want_out, want_err = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
        detach = detach_sequence(req.arg("detachKeys"))
        # logs=1: the output from the first run on; else what is written from now on (not the
        # earlier runs' output that a `docker start -a` of a stopped container would repeat)
        start = 0 if req.flag("logs") else logfile.size(store.log_path(c))
        attachments.begin(c.id)

        def hijacked(sock: socket.socket, rfile: IO[bytes]) -> None:
            ended = threading.Event()  # detached by the keys, or the client hung up
            try:
                with hangup.watch(sock, ended.set, hijacked=True):
                    current = _await_run(c, ended) if req.flag("stream") else c
                    if current is None:
                        return
                    stdio = store.process_io(current)
                    if want_in and stdio is not None and current.open_stdin:
                        threading.Thread(target=_input, args=(rfile, sock, stdio, detach, current.stdin_once, ended),
                                         name=f"attach-stdin-{c.short_id}", daemon=True).start()
                    if req.flag("stream"):
                        _follow(current, sock, want_out, want_err, start=start, stop=ended)
            except (BrokenPipeError, ConnectionResetError, NoSuchContainer):
                pass
            finally:
                attachments.end(c.id)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)

        return Reply(200, hijack=hijacked, content_type=RAW_STREAM if c.tty else MUX_STREAM)

    def _input(rfile: IO[bytes], sock: socket.socket, stdio: ProcessIO, detach: bytes, close_at_eof: bool,
               detached: threading.Event) -> None:
        """The client's input to the container; on the detach keys the attach ends, the container runs on."""
        read = getattr(rfile, "read1", rfile.read)
        try:
            if forward_input(lambda: read(1 << 16), stdio, detach=detach, close_at_eof=close_at_eof):
                detached.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass

    def _follow(c: Container, sock: socket.socket, want_out: bool, want_err: bool, *, start: int,
                stop: threading.Event) -> None:
        """Copy the container's output (frames, or raw for a TTY) until its process ends, without
        recording the end: that is the wait endpoint's job (it alone sees the exit code of an
        --rm container). `start`: the log's size when the attach came (0: from the start)."""
        handle = store.handle(c)
        wanted = {"stdout": want_out, "stderr": want_err}

        def write(stream: str, data: bytes) -> None:
            if wanted[stream]:
                sock.sendall(data if c.tty else mux.frame(mux.STDOUT if stream == "stdout" else mux.STDERR, data))

        def ended(timeout: float) -> bool:
            return stop.is_set() or handle is None or handle.wait(timeout) is not None

        def written() -> None:
            if not stop.is_set():  # (a detach leaves the container running: nothing more to wait for)
                logfile.wait_written(c.monitor)

        logfile.copy(store.log_path(c), write, logfile.Selection(), ended=ended, written=written, start=start)

    @router.route("POST", "/containers/{id}/resize")
    def resize(req: Request) -> Reply:
        c = store.refresh(container(req))
        stdio = store.process_io(c) if c.state.running else None
        if stdio is None:
            raise ApiError(409, f"container {c.short_id} is not running with a terminal this daemon holds")
        stdio.resize(req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0)
        return Reply(200, None)

    @router.route("GET", "/containers/{id}/logs")
    def logs(req: Request) -> Reply:
        c = container(req)
        if not req.flag("stdout") and not req.flag("stderr"):
            raise ApiError(400, "you must choose at least one stream (stdout or stderr)")
        drop = lambda _b: b""  # noqa: E731 -- a stream the client did not ask for
        raw = lambda b: b  # noqa: E731 -- a TTY's output is one stream, sent as it is
        options = {"follow": req.flag("follow"), "tail": req.arg("tail") or "all", "since": req.arg("since") or "",
                   "until": req.arg("until") or "", "timestamps": req.flag("timestamps")}
        try:  # a bad value is a 400 before the stream starts
            logs_selection(options)
        except UsageError as exc:
            raise ApiError(400, str(exc)) from None
        chunks = jobio.stream(engine, "logs", c.id, options=options,
                              out=(raw if c.tty else mux.stdout_frame) if req.flag("stdout") else drop,
                              err=(raw if c.tty else mux.stderr_frame) if req.flag("stderr") else drop)
        return Reply(200, stream=chunks, content_type=RAW_STREAM if c.tty else MUX_STREAM)

    @router.route("GET", "/containers/json")
    def list_(req: Request) -> Reply:
        req.refuse_filters()
        for name in ("since", "before"):
            req.refuse_arg(name, "give a filter instead (which strata does not support either)")
        options = {"all": req.flag("all"), "last": req.int_arg("limit", -1), "size": req.flag("size"), "json": True}
        listed = jobio.run(engine, "ps", options=options).json()
        sizes = ("SizeRw", "SizeRootFs") if req.flag("size") else ()  # dockerd leaves them out without size
        return Reply(200, [{**{k: c[k] for k in ("Id", "Names", "Image", "ImageID", "Command", "State", "Status",
                                                  "HostConfig", "Ports", "NetworkSettings", *sizes)},
                            "Created": unix_time(c["Created"]), "Labels": c["Labels"], "Mounts": []} for c in listed])

    @router.route("GET", "/containers/{id}/json")
    def inspect(req: Request) -> Reply:
        data = inspected(req)
        data.setdefault("Config", {}).update({"AttachStdout": True, "AttachStderr": True})
        data.setdefault("HostConfig", {})["LogConfig"] = {"Type": "json-file", "Config": {}}
        for key, value in _INSPECT_DEFAULTS.items():
            data.setdefault(key, copy.deepcopy(value))
        return Reply(200, data)

    @router.route("POST", "/containers/{id}/stop")
    def stop(req: Request) -> Reply:
        c = inspected(req)
        if not c["State"]["Running"]:
            return Reply(304, None)
        req.refuse_arg("signal", "a container stops with its stop signal (--stop-signal at create)")
        jobio.run(engine, "stop", c["Id"], options={"time": req.int_arg("t", None)})
        return Reply(204, None)

    @router.route("POST", "/containers/{id}/kill")
    def kill(req: Request) -> Reply:
        jobio.run(engine, "kill", inspected(req)["Id"], options={"signal": req.arg("signal") or "KILL"})
        return Reply(204, None)

    @router.route("DELETE", "/containers/{id}")
    def delete(req: Request) -> Reply:
        if req.flag("link"):
            raise ApiError(400, "link: strata has no legacy container links (--link) to remove")
        # v: the container's anonymous volumes -- strata makes none, so there is nothing to remove
        jobio.run(engine, "rm", inspected(req)["Id"], options={"force": req.flag("force")})
        return Reply(204, None)

    @router.route("GET", "/containers/{id}/changes")
    def changes(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "diff", req.params["id"], options={"json": True}).json())

    @router.route("POST", "/commit")
    def commit(req: Request) -> Reply:
        ref = req.arg("container")
        if not ref:
            raise ApiError(400, "container is required")
        if not createbody.zero(req.json(required=False)):
            raise ApiError(400, "commit's body (a container config) is not supported by strata: give the image's "
                                "config as changes (docker commit -c 'CMD ...')")
        repo, tag = req.arg("repo"), req.arg("tag")
        args = [ref] + ([f"{repo}:{tag}" if tag else repo] if repo else [])
        options = {"message": req.arg("comment") or "", "author": req.arg("author") or "",
                   "change": req.args("changes"), "pause": "true" if req.flag("pause", True) else "false"}
        job = jobio.run(engine, "commit", *args, options=options)
        return Reply(201, {"Id": job.stdout.getvalue().decode().strip()})

    @router.route("GET", "/containers/{id}/export")
    def export(req: Request) -> Reply:
        container_id = inspected(req)["Id"]  # a missing container is a 404 before the tar starts
        return Reply(200, stream=jobio.stream(engine, "export", container_id), content_type="application/x-tar")

"""Exec endpoints: create, start (hijacked, or detached), resize, inspect."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import IO

from ...containers.stdio import detach_sequence, forward_input
from ...engine import Engine
from ...errors import EngineError
from .. import createbody, jobio, mux, schema
from ..http import ApiError, Reply, Request, Router
from .containers import MUX_STREAM, RAW_STREAM

# The exec config fields strata honours; any other field with a value is refused by name. Two
# are read elsewhere, as dockerd does: Detach at start (the docker CLI sends it in both), and
# Container (docker-py repeats the container the URL names).
EXEC_HONOURED = ("Cmd", "User", "Privileged", "Tty", "AttachStdin", "AttachStdout", "AttachStderr", "Detach",
                 "DetachKeys", "Env", "WorkingDir", "Container")


def add_routes(router: Router, engine: Engine) -> None:
    execs = engine.containers.execs

    @router.route("POST", "/containers/{id}/exec")
    def create(req: Request) -> Reply:
        body = req.json()
        schema.check(body, schema.EXEC_CONFIG, "exec config")
        if not body.get("Cmd"):
            raise ApiError(400, "the exec config needs a Cmd (a non-empty list)")
        if body.get("Privileged"):
            raise ApiError(400, "privileged exec is not supported: strata gives exec'd processes the "
                                "container's capabilities")
        for name, value in body.items():
            if name not in EXEC_HONOURED and not createbody.zero(value):
                raise ApiError(400, f"exec config: {name}={value!r} is not supported by strata")
        options = {
            "attach_stdout": body.get("AttachStdout", True) is not False,
            "attach_stderr": body.get("AttachStderr", True) is not False,
            "interactive": bool(body.get("AttachStdin")),
            "tty": bool(body.get("Tty")),
            "env": [str(e) for e in body.get("Env") or []],
            "user": body.get("User") or "",
            "workdir": body.get("WorkingDir") or "",
            "detach_keys": body.get("DetachKeys") or "",
        }
        job = jobio.run(engine, "exec_create", req.params["id"], *[str(a) for a in body["Cmd"]], options=options)
        return Reply(201, {"Id": job.stdout.getvalue().decode().strip()})

    @router.route("POST", "/exec/{id}/start")
    def start(req: Request) -> Reply:
        body = req.json(required=False) or {}
        instance = execs.get(req.params["id"])
        if body.get("Detach"):
            execs.run_detached(instance)
            return Reply(200, None)
        detach = detach_sequence(instance.detach_keys)
        execs.check_startable(instance)

        def hijacked(sock: socket.socket, rfile: IO[bytes]) -> None:
            """As dockerd does: the process starts once the connection is the client's, so no
            output can be read with the headers; a start that fails is told on the stream."""
            frame = (lambda _stream, data: data) if instance.tty else mux.frame
            size = body.get("ConsoleSize") or [0, 0]  # [height, width]: the terminal's size from the start
            try:
                execs.start(instance, (int(size[0]), int(size[1])) if all(size) else None)
            except EngineError as exc:
                with contextlib.suppress(OSError):
                    sock.sendall(frame(mux.STDERR, f"{exc}\r\n".encode()))
                    sock.shutdown(socket.SHUT_WR)
                return
            io = instance.io
            assert io is not None

            def feed() -> None:
                read = getattr(rfile, "read1", rfile.read)
                with contextlib.suppress(OSError, ValueError):
                    if forward_input(lambda: read(1 << 16), io, detach=detach, close_at_eof=True):
                        sock.shutdown(socket.SHUT_RDWR)

            if instance.open_stdin:
                threading.Thread(target=feed, name=f"exec-stdin-{instance.id[:12]}", daemon=True).start()
            wanted = {mux.STDOUT: instance.attach_stdout, mux.STDERR: instance.attach_stderr}
            execs.pump(instance, lambda stream, data: sock.sendall(frame(stream, data)) if wanted[stream] else None)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        return Reply(200, hijack=hijacked, content_type=RAW_STREAM if instance.tty else MUX_STREAM)

    @router.route("POST", "/exec/{id}/resize")
    def resize(req: Request) -> Reply:
        instance = execs.get(req.params["id"])
        if instance.io is None or not instance.running:
            raise ApiError(409, f"exec instance {instance.id[:12]} is not running")
        instance.io.resize(req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0)
        return Reply(200, None)

    @router.route("GET", "/exec/{id}/json")
    def inspect(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "exec_inspect", req.params["id"]).json())

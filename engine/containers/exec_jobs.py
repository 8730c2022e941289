"""The exec jobs: `exec` (the CLI's: create, start, stream), and the API's two steps
`exec_create` and `exec_inspect` (its start streams over the hijacked connection)."""

from __future__ import annotations

import contextlib
import signal
import threading

from ..job import Job
from ..jobspec import JobTable, Option
from .exec import ExecInstance, Execs
from .jobs import follow_size
from .stdio import forward_input, reader_of

jobs = JobTable()

EXEC_ARGS = "CONTAINER COMMAND [ARG...]"
CREATE_OPTIONS = {
    "interactive": Option(bool, "keep stdin open and pass it to the process", ("-i", "--interactive")),
    "tty": Option(bool, "give the process a terminal", ("-t", "--tty")),
    "env": Option(list, "KEY=VALUE for the process's environment", ("-e", "--env")),
    "user": Option(str, "USER[:GROUP] to run as (default: the container's)", ("-u", "--user"), ""),
    "workdir": Option(str, "working directory (default: the container's)", ("-w", "--workdir"), ""),
    "detach_keys": Option(str, "the keys that detach from the process (default ctrl-p,ctrl-q)",
                          ("--detach-keys",), ""),
}
API_OPTIONS = {  # exec_create's alone: the CLI's exec always streams both
    "attach_stdout": Option(bool, "stream the process's stdout to the client (the API's AttachStdout)", default=True),
    "attach_stderr": Option(bool, "stream the process's stderr to the client (the API's AttachStderr)", default=True),
}


def _execs(job: Job) -> Execs:
    return job.engine.containers.execs


def _create(job: Job) -> ExecInstance:
    o = job.options
    return _execs(job).create(job.args[0], job.args[1:], env=o["env"], user=o["user"], workdir=o["workdir"],
                              tty=o["tty"], interactive=o["interactive"], detach_keys=o["detach_keys"],
                              attach_stdout=o.get("attach_stdout", True), attach_stderr=o.get("attach_stderr", True))


@jobs.job("exec", args=EXEC_ARGS, help="run a command in a running container", options={
    **CREATE_OPTIONS, "detach": Option(bool, "start it and return at once", ("-d", "--detach"))})
def exec_(job: Job) -> int:
    """`exec CONTAINER COMMAND...`: the command's output, and its exit status."""
    execs = _execs(job)
    instance = _create(job)
    if job.options["detach"]:
        execs.run_detached(instance)
        return 0
    execs.start(instance)
    io = instance.io
    assert io is not None
    follow_size(job, io)
    if instance.open_stdin:
        read = reader_of(job.stdin)

        def feed() -> None:
            with contextlib.suppress(OSError, ValueError):
                forward_input(read, io, detach=b"", close_at_eof=True)

        threading.Thread(target=feed, name="exec-stdin", daemon=True).start()
    pending: list[int] = getattr(job, "pending_signals", [])
    done = threading.Event()

    def resizes() -> None:  # SIGWINCH from the caller's signal proxy: the terminal changed size
        while not done.wait(0.05):
            while pending:
                if pending.pop(0) == signal.SIGWINCH:
                    follow_size(job, io)

    threading.Thread(target=resizes, name="exec-resize", daemon=True).start()
    try:
        code = execs.pump(instance, lambda stream, data: _write(job, stream, data))
    finally:
        done.set()
    error = execs.start_error(instance)
    if error is not None and instance.tty:
        job.error_line(f"Error: {error}")
    return code


def _write(job: Job, stream: int, data: bytes) -> None:
    out = job.stderr if stream == 2 else job.stdout
    out.write(data)
    out.flush()


@jobs.job("exec_create", args=EXEC_ARGS, options={**CREATE_OPTIONS, **API_OPTIONS},
          help="create an exec instance (the API's first step of docker exec); prints its id")
def exec_create(job: Job) -> int:
    job.write(_create(job).id + "\n")
    return 0


@jobs.job("exec_inspect", args="EXEC", help="an exec instance as JSON")
def exec_inspect(job: Job) -> int:
    (ref,) = job.args
    job.write_json(_execs(job).get(ref).inspect())
    return 0

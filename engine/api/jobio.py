"""Running engine jobs for the API: to completion, or streamed while they run.

Docker's classic serveapi translated each request into jobs; so does strata's. A job that
produces output over time (load, pull, push, logs, export) runs in a worker thread whose
stdout feeds the HTTP reply chunk by chunk, through a bounded queue so a slow client
slows the job instead of filling memory. A client that goes away stops the job's output
with BrokenPipeError, as a closed pipe would.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from ..engine import Engine
from ..errors import EngineError
from ..job import Job
from .hangup import Cancellable

_END = object()


class _QueueWriter(io.RawIOBase):
    def __init__(self, q: queue.Queue, cancelled: threading.Event, transform: Callable[[bytes], bytes]) -> None:
        self.q = q
        self.cancelled = cancelled
        self.transform = transform

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if not data:
            return 0
        if not _put(self.q, self.transform(data), self.cancelled):
            raise BrokenPipeError("the API client went away")
        return len(data)


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Queue `item` unless `stop` is set (False): a full queue nobody reads must not hold
    the job's thread for ever."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def run(engine: Engine, name: str, *args: str, options: Mapping[str, Any] | None = None,
        stdin: IO[bytes] | None = None) -> Job:
    """Run a job to completion; a failure raises its typed error (or EngineError with its stderr)."""
    job = engine.job(name, *args, options=options, stdin=stdin)
    job.run()
    if job.status != 0:
        if job.error is not None:
            raise job.error
        raise EngineError(job.stderr.getvalue().decode(errors="replace").strip() or f"{name} failed")
    return job


def stream(
    engine: Engine,
    name: str,
    *args: str,
    options: Mapping[str, Any] | None = None,
    stdin: IO[bytes] | None = None,
    out: Callable[[bytes], bytes] = lambda b: b,
    err: Callable[[bytes], bytes] | None = None,
    line: Callable[[str], bytes] | None = None,
    on_error: Callable[[str], bytes] | None = None,
) -> Cancellable:
    """The job's stdout (and stderr, when `err` is given) as chunks while it runs.

    `line(text)` turns each stdout line into a message of its own (the JSON progress
    streams of load, pull and push); `on_error(message)` makes the final chunk when the
    job fails after the reply started (the CLI shows that "error" object and exits 1);
    without it a failure raises, and the reply ends without its last chunk (a truncated
    `docker save` or `export` tar is an error, not a success). A client that hangs up
    cancels the job (`job.cancelled`: events and stats end with their reader).
    """
    q: queue.Queue = queue.Queue(maxsize=64)
    cancelled = threading.Event()
    stderr_sink: IO[bytes] = (io.BufferedWriter(_QueueWriter(q, cancelled, err), 1 << 16) if err is not None
                              else io.BytesIO())
    stdout_sink = io.BufferedWriter(_QueueWriter(q, cancelled, out), 1 << 16)
    job = engine.job(name, *args, options=options, stdin=stdin, stdout=stdout_sink, stderr=stderr_sink)
    job.cancelled = cancelled  # type: ignore[attr-defined]  # a job that waits (events, stats) ends with its reader
    closed = threading.Event()  # the reply is over: nobody takes the end from the queue

    def work() -> None:
        try:
            job.run()
            for sink in (stdout_sink, stderr_sink):
                try:
                    sink.flush()
                except (BrokenPipeError, ValueError):
                    pass
        finally:
            _put(q, _END, closed)

    worker = threading.Thread(target=work, name=f"api-job-{name}", daemon=True)
    worker.start()

    def chunks() -> Iterator[bytes]:
        try:
            pending = b""
            while (chunk := q.get()) is not _END:
                if line is None:
                    yield chunk
                    continue
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for text in complete:
                    yield line(text.decode(errors="replace"))
            if pending and line is not None:
                yield line(pending.decode(errors="replace"))
            if job.status != 0 and not cancelled.is_set():
                message = str(job.error) if job.error is not None else _stderr_text(stderr_sink) or f"{name} failed"
                if on_error is None:  # a tar or raw output has no place for an error: end it unfinished
                    raise job.error if job.error is not None else EngineError(message)
                yield on_error(message)
        finally:
            closed.set()
            cancelled.set()
            worker.join(timeout=5)

    return Cancellable(chunks(), cancelled)


def _stderr_text(sink: IO[bytes]) -> str:
    if isinstance(sink, io.BytesIO):
        return sink.getvalue().decode(errors="replace").strip()
    return ""

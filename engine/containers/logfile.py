"""A container's log, as Docker's json-file driver keeps it: one JSON record per line of
output, `{"log": "hi\\n", "stream": "stdout", "time": "2026-01-02T03:04:05.123456789Z"}`,
in `<container dir>/<id>-json.log`, so `logs --since/--until/--timestamps` have each
line's time and stream.

Writers. A container's stdout and stderr are the FIFOs `stdout.pipe` and `stderr.pipe` of
its directory (the execdriver's monitor opens them as it opened plain files before). A
*copier* process, forked for each start because it must outlive the engine (`run -d`
returns), reads them, stamps each line with the time it read it and appends the records.
It ends when the container's monitor has ended and the FIFOs are drained; the engine keeps
its pid beside the monitor's, and whoever saw the container end waits for it
(`wait_written`) before the last read, so no line is missed. A terminal's output is
stamped by the engine thread that reads the terminal (stdio.py), with the same writer.

Each write(2) holds whole records and the file is opened O_APPEND, so two writers never
interleave inside a record. A crash mid-write leaves a last line without its newline: a
reader stops before an unfinished line (a follower waits for the rest), and the next
copier ends it with a newline first, so it becomes one line the reader skips and logs.
Bytes that are not UTF-8 survive: they are kept as lone surrogate escapes (`\\udcXX`).
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import re
import select
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from ..errors import ExecError, UsageError
from ..events import parse_when
from ..execdrivers import linux
from ..execdrivers.base import MonitorInfo, _proc_start_time, wait_for_exit

log = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
FIFOS = {"stdout": "stdout.pipe", "stderr": "stderr.pipe"}
MAX_LINE = 16 * 1024  # Docker's: a longer line is split into records of this size
CHUNK = 1 << 16
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?")
COPIER_WAIT = 30.0  # seconds a reader waits for a copier that is still writing before it reads anyway
POLL = 0.02  # seconds between looks at a followed log (attach reads it: keystrokes echo through it)


def log_path(directory: str, container_id: str) -> str:
    return os.path.join(directory, f"{container_id}-json.log")


def rfc3339nano(nanos: int) -> str:
    """Docker's fixed-width RFC 3339 time with nanoseconds, in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(nanos // 10**9)) + f".{nanos % 10**9:09d}Z"


def parse_rfc3339nano(text: str) -> int:
    """Nanoseconds since the epoch of a time `rfc3339nano` wrote (UTC, `Z`)."""
    whole, _, fraction = text.removesuffix("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 10**9 + int((fraction + "000000000")[:9])


def record(stream: str, data: bytes, nanos: int) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    return json.dumps({"log": text, "stream": stream, "time": rfc3339nano(nanos)}).encode() + b"\n"


class LineWriter:
    """Output of one stream as records of a line each (at most MAX_LINE bytes), stamped with
    the time it was read. What follows the last newline of a read is a record of its own
    at once, not held for the rest of its line: attach reads the log, and a prompt
    (`/ # `) must show before its line is ended (Docker's partial messages)."""

    def __init__(self, fd: int, stream: str) -> None:
        self.fd = fd
        self.stream = stream

    def feed(self, data: bytes) -> None:
        now = time.time_ns()
        out = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start, start + MAX_LINE)
            end = min(len(data), start + MAX_LINE) if end < 0 else end + 1
            out.append(record(self.stream, data[start:end], now))
            start = end
        _write_all(self.fd, b"".join(out))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def open_for_append(path: str) -> int:
    """The log opened for appending; a line a crash left unfinished is ended first."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        _write_all(fd, b"\n")
    return fd


# -- the copier -------------------------------------------------------------------------


@dataclass
class Copier:
    """A started copier: send it the monitor's pid once the container runs (`started`), or
    let it go (`abandon`: the start failed, it drains what came and ends)."""

    sock: socket.socket
    pid: int
    start_time: int | None

    def started(self, monitor_pid: int) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"%d\n" % monitor_pid)
        self.sock.close()

    def abandon(self) -> None:
        self.sock.close()

    def to_json(self) -> list[Any]:
        return [self.pid, self.start_time]


def fifo_paths(directory: str) -> tuple[str, str]:
    """The container's stdout and stderr FIFOs (made when missing)."""
    paths = []
    for stream in STREAMS:
        path = os.path.join(directory, FIFOS[stream])
        try:
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                os.unlink(path)
                os.mkfifo(path, 0o600)
        except FileNotFoundError:
            os.mkfifo(path, 0o600)
        paths.append(path)
    return paths[0], paths[1]


def start_copier(directory: str, container_id: str) -> Copier:
    """Fork the copier of a start (twice: it belongs to no engine); returns once it holds
    the FIFOs, so the monitor's opens of them never block."""
    out, err = fifo_paths(directory)
    path = log_path(directory, container_id)
    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                ours.close()
                _copier_main(theirs, out, err, path)
        finally:
            os._exit(0)
    theirs.close()
    os.waitpid(child, 0)
    ready = ours.recv(64)
    if not ready.startswith(b"ready "):
        ours.close()
        raise ExecError(f"the log copier of container {container_id[:12]} did not start: {ready!r}")
    pid = int(ready.split()[1])
    return Copier(ours, pid, _proc_start_time(pid))


def _copier_main(sock: socket.socket, out_path: str, err_path: str, path: str) -> None:
    """Copy the FIFOs to the log until the monitor (its pid comes on `sock`) has ended."""
    try:
        linux.set_process_name("strata-logger")
        os.chdir("/")  # no hold on the engine's working directory's filesystem
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)  # not the engine's handlers
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        # O_RDWR: the open never waits for a writer, and no EOF comes between writers
        fifos = {os.open(p, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC): s
                 for p, s in zip((out_path, err_path), STREAMS, strict=True)}
        log_fd = open_for_append(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            sock.sendall(f"error {exc}".encode())
        return
    writers = {fd: LineWriter(log_fd, stream) for fd, stream in fifos.items()}
    sock.sendall(b"ready %d" % os.getpid())
    poller = select.poll()
    for fd in (*fifos, sock.fileno()):
        poller.register(fd, select.POLLIN)
    pidfd: int | None = None
    received = b""
    done = False
    while not done:
        for fd, _events in poller.poll():
            if fd in writers:
                _drain(fd, writers[fd])
            elif fd == sock.fileno():
                chunk = sock.recv(64)
                received += chunk
                if not chunk:  # the engine is gone, or the start failed: no pid will come
                    poller.unregister(fd)
                    if pidfd is None:
                        done = True
                elif received.endswith(b"\n") and pidfd is None:
                    try:
                        pidfd = os.pidfd_open(int(received))
                    except (ProcessLookupError, ValueError):
                        done = True  # it has ended already
                    else:
                        poller.register(pidfd, select.POLLIN)
            elif fd == pidfd:
                done = True  # the monitor ended: the container's processes are gone
    for fd, writer in writers.items():
        _drain(fd, writer)


def _drain(fd: int, writer: LineWriter) -> None:
    while True:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if not data:
            return
        writer.feed(data)


def wait_written(monitor: dict[str, Any] | None, timeout: float = COPIER_WAIT) -> None:
    """After the container ended: until its copier has written every line (a monitor
    record without one, from an engine that started no copier, has nothing to wait for)."""
    logger = (monitor or {}).get("logger")
    if logger:
        wait_for_exit(MonitorInfo(logger[0], logger[1], None), timeout)


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    nanos: int
    stream: str
    data: bytes

    def stamped(self) -> bytes:
        """The line as `logs --timestamps` shows it: its time, a space, the line."""
        return rfc3339nano(self.nanos).encode() + b" " + self.data


def read_lines(f: IO[bytes]) -> Iterator[Line]:
    """The whole records from `f`'s position on; it is left before an unfinished last line."""
    while True:
        start = f.tell()
        raw = f.readline()
        if not raw:
            return
        if not raw.endswith(b"\n"):
            f.seek(start)  # still being written (or cut by a crash: the next writer ends it)
            return
        try:
            item = json.loads(raw)
            yield Line(parse_rfc3339nano(item["time"]), item["stream"],
                       item["log"].encode("utf-8", "surrogateescape"))
        except (ValueError, KeyError, TypeError, AttributeError):
            if raw.strip():
                log.warning("skipping an unreadable log record at byte %d of %s", start, getattr(f, "name", "?"))


def seek_tail(f: IO[bytes], lines: int) -> None:
    """Put `f` at the start of its last `lines` records (an unfinished last one not counted)."""
    end = f.seek(0, os.SEEK_END)
    if lines == 0:
        return
    pos, count, first = end, 0, True
    while pos > 0:
        step = min(pos, 1 << 16)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            if first:  # the newline ending the last whole record; what follows it is unfinished
                first = False
                continue
            count += 1
            if count == lines:
                f.seek(pos + i + 1)
                return
    f.seek(0)


@dataclass(frozen=True)
class Selection:
    """What `logs` shows: `tail` (None: all) last records, from `since` to `until`
    (nanoseconds; None: unbounded), with or without times."""

    tail: int | None = None
    since: int | None = None
    until: int | None = None
    timestamps: bool = False


def selection(tail: str = "all", since: str = "", until: str = "", timestamps: bool = False) -> Selection:
    """`logs` options as the CLI and the API give them: `tail` a count or "all"; `since` and
    `until` unix seconds (fractions kept to the nanosecond), a duration before now (`10m`)
    or an RFC 3339 time; "" or 0 leaves that end open (the API's default)."""
    if tail not in ("", "all") and not tail.isdigit():
        raise UsageError(f"--tail takes a number of lines or 'all', not {tail!r}")
    return Selection(None if tail in ("", "all") else int(tail), _nanos(since, "since"), _nanos(until, "until"),
                     timestamps)


def _nanos(text: str, what: str) -> int | None:
    if not text or text.strip("0.") == "":
        return None
    with contextlib.suppress(InvalidOperation):
        return int(Decimal(text) * 10**9)
    exact = _RFC3339.fullmatch(text)
    if exact:  # to the nanosecond, which datetime cannot hold (no zone: UTC, as events take it)
        zone = (exact.group(3) or "+00:00").replace("Z", "+00:00")
        whole = dt.datetime.fromisoformat(exact.group(1) + zone)
        return int(whole.timestamp()) * 10**9 + int((exact.group(2) or "").ljust(9, "0"))
    try:
        when = parse_when(text)
    except UsageError as exc:
        raise UsageError(f"invalid --{what}: {exc}") from None
    return None if when is None else int(when * 10**9)


def copy(path: str, emit: Callable[[str, bytes], None], sel: Selection, *,
         ended: Callable[[float], bool] | None = None, written: Callable[[], None] = lambda: None,
         start: int = 0) -> None:
    """Emit (stream, bytes) of the selected lines; with `ended` (follow), go on as lines
    come until `ended(timeout)` says the container stopped (then `written()` waits for the
    last lines) or `until` has passed. `start`: a size the log had earlier (what an attach
    saw when it came): only the lines written after it."""
    with _open(path) as f:
        if start:
            f.seek(start)
        elif sel.tail is not None:
            seek_tail(f, sel.tail)
        while True:
            for line in read_lines(f):
                if sel.until is not None and line.nanos > sel.until:
                    return
                if sel.since is None or line.nanos >= sel.since:
                    emit(line.stream, line.stamped() if sel.timestamps else line.data)
            if ended is None or (sel.until is not None and time.time_ns() > sel.until):
                return
            if ended(POLL):
                written()
                ended = None  # one last read


def size(path: str) -> int:
    """How much of the log is written now (0: not yet)."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _open(path: str) -> IO[bytes]:
    """The log, or an empty one for a container that never started."""
    return open(path if os.path.exists(path) else os.devnull, "rb")

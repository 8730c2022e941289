"""The engine's side of a running process's interactive I/O: its stdin and its terminal.

A container's output normally goes from its monitor's FIFOs through a copier process to
its log (logfile.py); a container with a terminal writes to a pty instead, whose master
only the engine that started it holds, so a thread of that engine copies the terminal's
output to the log as stdout lines (where `logs` and `attach` read it, as for any container). Attach streams write the
client's input here. File descriptors cannot outlive the engine process: a container
started by an engine that has ended keeps running but can take no more input.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import IO

from ..errors import Conflict, UsageError
from ..execdrivers import terminal
from . import logfile

log = logging.getLogger(__name__)

CHUNK = 1 << 16


class ProcessIO:
    """The write end of a process's stdin pipe and/or the master of its terminal."""

    def __init__(self, name: str, stdin: int | None, console: int | None, log_path: str | None = None,
                 resize: Callable[[int, int], None] | None = None) -> None:
        """`resize(rows, cols)` sizes the terminal when more than the master needs it (else the master is)."""
        self.name = name
        self._resize = resize
        self._lock = threading.Lock()
        self._stdin = stdin
        self.console = console
        self._pump: threading.Thread | None = None
        if console is not None and log_path is not None:
            self._pump = threading.Thread(target=self._copy_console, args=(log_path,), name=f"tty-{name[:12]}",
                                          daemon=True)
            self._pump.start()

    @property
    def tty(self) -> bool:
        return self.console is not None

    def write(self, data: bytes) -> None:
        """Input for the process: to its terminal, or its stdin pipe; BrokenPipeError once closed."""
        with self._lock:
            fd = self.console if self.console is not None else self._stdin
        if fd is None:
            raise BrokenPipeError(f"{self.name}: stdin is closed")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def close_stdin(self) -> None:
        """The end of the input (the client closed its stdin and the container's is `StdinOnce`)."""
        with self._lock:
            fd, self._stdin = self._stdin, None
        if fd is not None:
            os.close(fd)

    def resize(self, rows: int, cols: int) -> None:
        if self.console is None:
            raise Conflict(f"{self.name} has no terminal to resize (it was not started with a TTY)")
        if self._resize is not None:
            self._resize(rows, cols)
        else:
            terminal.set_size(self.console, rows, cols)

    def close(self, timeout: float = 5.0) -> None:
        """After the process ended: let the terminal's last output reach the log, close everything."""
        self.close_stdin()
        if self._pump is not None:
            self._pump.join(timeout)
        with self._lock:
            fd, self.console = self.console, None
        if fd is not None:
            os.close(fd)

    def _copy_console(self, log_path: str) -> None:
        """Terminal output to the log until the last process holding the terminal ends (EIO)."""
        assert self.console is not None
        fd = self.console
        out = logfile.open_for_append(log_path)
        writer = logfile.LineWriter(out, "stdout")
        try:
            while True:
                try:
                    data = os.read(fd, CHUNK)
                except OSError as exc:
                    if exc.errno not in (errno.EIO, errno.EBADF):
                        log.warning("reading the terminal of %s: %s", self.name, exc)
                    return
                if not data:
                    return
                with contextlib.suppress(OSError):
                    writer.feed(data)
        finally:
            os.close(out)


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL_SPECIAL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def detach_sequence(keys: str | None) -> bytes:
    """Docker's detach keys (`ctrl-p,ctrl-q`, `ctrl-@`, `a`...) as the bytes a terminal sends."""
    out = bytearray()
    for key in (keys or DEFAULT_DETACH_KEYS).split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in _CTRL_SPECIAL:
                out.append(_CTRL_SPECIAL[ch])
                continue
        elif len(key) == 1 and key.isascii():
            out.append(ord(key))
            continue
        raise UsageError(f"invalid detach keys {keys!r}: {key!r} is neither a character nor ctrl-<a-z@[\\\\]^_>")
    return bytes(out)


def reader_of(stream: IO[bytes]) -> Callable[[], bytes]:
    """A read of what is there now: on the file descriptor when the stream has one (a thread
    blocked in a buffered read would hold its lock when the interpreter exits)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        read = getattr(stream, "read1", stream.read)
        return lambda: read(CHUNK)
    return lambda: os.read(fd, CHUNK)


def forward_input(read: Callable[[], bytes], target: ProcessIO, *, detach: bytes, close_at_eof: bool) -> bool:
    """Copy what `read()` returns to the process until it returns b"" (then close the process's
    stdin if `close_at_eof`) or the detach sequence arrives; True if it did (it is not passed on)."""
    held = b""
    while chunk := read():
        out = bytearray()
        for byte in chunk:
            if detach and byte == detach[len(held)]:
                held += bytes((byte,))
                if len(held) == len(detach):
                    if out:
                        target.write(bytes(out))
                    return True
                continue
            out += held
            held = b""
            if detach and byte == detach[0]:
                held = bytes((byte,))
            else:
                out.append(byte)
        if out:
            target.write(bytes(out))
    if held:
        target.write(held)
    if close_at_eof:
        target.close_stdin()
    return False

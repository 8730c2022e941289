"""Drive a command on a pseudo-terminal, as a user at a terminal would (docker run -it)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time
from dataclasses import dataclass, field

WAIT = 60.0  # seconds to wait for an expected output before giving up (a hang, not a timing check)


@dataclass
class Terminal:
    pid: int
    fd: int
    output: bytearray = field(default_factory=bytearray)

    def expect(self, pattern: bytes, timeout: float = WAIT) -> None:
        """Read until `pattern` has appeared in the output since the start."""
        deadline = time.monotonic() + timeout
        while pattern not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never appeared; output: {bytes(self.output)!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:  # the command ended
                    raise AssertionError(f"{pattern!r} never appeared; output: {bytes(self.output)!r}") from None

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def resize(self, rows: int, cols: int) -> None:
        """What a terminal emulator does when its window changes: new size, SIGWINCH."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)

    def wait(self, timeout: float = WAIT) -> int:
        """The command's exit status, draining its output meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._drain()  # what it wrote just before it ended is still in the pty
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"the command did not end; output: {bytes(self.output)!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:
                    pass

    def _drain(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: nothing more
                return
            if not chunk:
                return
            self.output += chunk

    def close(self) -> None:
        os.close(self.fd)


def spawn(argv: list[str], env: dict[str, str], rows: int = 30, cols: int = 100) -> Terminal:
    """Start `argv` on a new pty of the given size."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return Terminal(pid, fd)


def shell_session(term: Terminal) -> int:
    """The checks every -it test makes: a TTY of the container's own devpts, its size the
    terminal's and following a resize, the shell's exit status passed through. A check
    that fails leaves no client behind."""
    try:
        return _shell_checks(term)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(term.pid, signal.SIGKILL)
            os.waitpid(term.pid, 0)
        raise
    finally:
        with contextlib.suppress(OSError):
            term.close()


def _shell_checks(term: Terminal) -> int:
    term.expect(b"# ")
    term.send(b"tty; stty size\r")
    term.expect(b"30 100")
    assert b"/dev/pts/" in term.output
    term.resize(44, 132)
    for _ in range(30):  # the resize travels through the client, the daemon and the runtime
        term.send(b"stty size\r")
        try:
            term.expect(b"44 132", timeout=2)
            break
        except AssertionError:
            continue
    term.expect(b"44 132")
    term.send(b"exit 3\r")
    return term.wait()

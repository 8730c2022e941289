"""`tar -x` as a floor: the process started, and waiting on its stdin, before any clock runs.

strata applies a layer in process; a `tar -x` timed from its spawn would charge the floor
with fork, exec, the dynamic loader and tar's own start-up, which strata never pays, so on
small layers strata would "beat" its floor. An `Untar` is therefore started untimed and
made to wait until tar is blocked reading its stdin (the kernel says so in
/proc/PID/syscall); a floor then times from the first byte it writes to that stdin until
tar has exited (all files written, stdin at EOF, tar's exit included).

tar runs with `-P` (`--absolute-names`): without it GNU tar extracts every symlink with an
absolute or `..` target (busybox's 268 applets) as an empty placeholder file and swaps the
link in at the end -- a guard against links that later members could follow out of the
directory, which costs three more syscalls a link and which strata's confined apply
(names resolved inside the layer) does not need. The floor's data is the harness's own
layer tars, extracted into a fresh directory nothing else touches.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import tempfile
import time
from types import TracebackType

from ..scenarios import clock

log = logging.getLogger(__name__)

BACKEND = "tar -x (started before the clock)"  # the floor rows' `backend`
READY_TIMEOUT = 30.0
READ_SYSCALL = {"x86_64": 0, "aarch64": 63}  # read(2)'s number, as /proc/PID/syscall shows it


class UntarFailed(RuntimeError):
    """tar did not start, or did not extract what it was fed; the message has its stderr."""


def blocked_reading_stdin(pid: int) -> bool:
    """Whether process `pid` is asleep in read(2) on fd 0 (so it has finished starting up)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    number = READ_SYSCALL.get(platform.machine())
    if number is None or len(fields) < 2 or not fields[0].isdigit():
        return False
    return state == "S" and int(fields[0]) == number and int(fields[1], 16) == 0


class Untar:
    """`tar -x -P -f - -C DEST --numeric-owner` running and blocked on its stdin (see module)."""

    def __init__(self, dest: str) -> None:
        os.makedirs(dest, exist_ok=True)
        self.dest = dest
        self.stderr = tempfile.TemporaryFile()  # a pipe could fill and stall tar
        self.proc = subprocess.Popen(
            ["tar", "-x", "-P", "-f", "-", "-C", dest, "--numeric-owner"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.stderr,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while not blocked_reading_stdin(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise UntarFailed(f"tar -x into {dest} never waited on its stdin: {self._errors()}")
            time.sleep(0.0005)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def write(self, data: bytes | memoryview) -> None:
        self.proc.stdin.write(data)  # type: ignore[union-attr]

    def finish(self) -> None:
        """EOF on tar's stdin, then wait for it to exit; UntarFailed unless it exited 0."""
        self.proc.stdin.close()  # type: ignore[union-attr]
        if self.proc.wait() != 0:
            raise UntarFailed(f"tar -x into {self.dest} exited {self.proc.returncode}: {self._errors()}")

    def close(self) -> None:
        """Kill tar if it still runs (an interrupted floor) and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.stderr.close()

    def _errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()

    def __enter__(self) -> Untar:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def fed(untar: Untar, data: bytes) -> float:
    """Seconds from the first byte of `data` written to the waiting tar until it exited."""
    t0 = clock()
    untar.write(data)
    untar.finish()
    return clock() - t0


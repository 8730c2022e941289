"""A readable stream fed by a writer thread through a pipe.

Exported layers can be gigabytes, so the tar is produced while it is read instead of
being buffered. Closing the stream early (a client that hangs up) must not leave the
writer blocked forever or leak the mounts it reads from: closing the read end makes the
writer's next write fail with EPIPE, the thread ends, and only then `on_close` runs
(exactly once), so a caller can unmount what the writer was reading.
"""

from __future__ import annotations

import fcntl
import io
import os
import threading
from collections.abc import Callable
from typing import IO, BinaryIO

PIPE_BUFFER = 1 << 20


class _PipeReader(io.RawIOBase):
    def __init__(self, fd: int, thread: threading.Thread, state: dict, on_close: Callable[[], None] | None) -> None:
        self._fd = fd
        self._thread = thread
        self._state = state
        self._on_close = on_close
        self._close_lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = os.readv(self._fd, [buffer])
        if n == 0:
            self._thread.join()
            error = self._state.get("error")
            if error is not None:
                raise OSError(f"exporting the layer failed: {error}") from error
        return n

    def close(self) -> None:
        with self._close_lock:
            if self.closed:
                return
            try:
                os.close(self._fd)  # a writer blocked in write() now gets EPIPE
                self._thread.join()
            finally:
                super().close()
                on_close, self._on_close = self._on_close, None
                if on_close is not None:
                    on_close()


def writer_stream(write: Callable[[BinaryIO], None], on_close: Callable[[], None] | None = None) -> IO[bytes]:
    """Run `write(file)` in a thread; return the readable end of what it writes."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BUFFER)  # fewer wake-ups per layer
    except OSError:
        pass  # over the per-user pipe limit: the default size works too
    state: dict = {}

    def run() -> None:
        out = open(write_fd, "wb", buffering=1 << 16)
        try:
            write(out)
            out.flush()
        except BrokenPipeError:
            pass  # the reader hung up: stop quietly
        except BaseException as exc:
            state["error"] = exc  # recorded before the reader can see EOF
        finally:
            try:
                out.close()
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=run, name="strata-layer-export", daemon=True)
    thread.start()
    return io.BufferedReader(_PipeReader(read_fd, thread, state, on_close), buffer_size=1 << 16)

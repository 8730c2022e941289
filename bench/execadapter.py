"""The bench's view of the engine's execdrivers: start a process in a mounted rootfs.

The exec scenario times the engine's own execdrivers (`engine.execdrivers`: oci via
runc/crun, native). When one cannot be used here, `load` raises ExecUnavailable with the
reason, and the scenario records "unavailable: <reason>" rows instead of numbers -- it
never times a stand-in.

The container's stdout is a FIFO the bench reads, so "echo's first byte" is the moment
the byte arrives, not when a log file is next polled.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shutil

_serial = itertools.count()


class ExecUnavailable(Exception):
    """This execdriver cannot run here; the message says why."""


class ExecFailed(Exception):
    """The process could not be started or did not exit as expected."""


class Process:
    """One started container process; `wait()` also releases the runtime's state."""

    def __init__(self, runner: Runner, container_id: str, state_dir: str, handle: object, stdout_fd: int | None):
        self.runner, self.id, self.state_dir, self.handle, self.stdout_fd = (
            runner,
            container_id,
            state_dir,
            handle,
            stdout_fd,
        )

    def read_stdout(self, n: int, timeout: float = 30.0) -> bytes:
        """Block until the first bytes arrive on stdout (b"" if the process ends first)."""
        assert self.stdout_fd is not None, "started without capture"
        poller = select.poll()
        poller.register(self.stdout_fd, select.POLLIN | select.POLLHUP)
        waited = 0.0
        while waited < timeout:
            if poller.poll(100):
                try:
                    data = os.read(self.stdout_fd, n)
                except BlockingIOError:
                    continue
                if data or self.handle.exit_status() is not None:  # type: ignore[attr-defined]
                    return data
            waited += 0.1
        raise ExecFailed(f"no output from container {self.id} within {timeout}s")

    def wait(self) -> int:
        try:
            status = self.handle.wait()  # type: ignore[attr-defined]
            if status.error:
                raise ExecFailed(f"{self.runner.name}: {status.error}")
            return int(status.code)
        finally:
            self.close()

    def close(self) -> None:
        if self.stdout_fd is not None:
            os.close(self.stdout_fd)
            self.stdout_fd = None
        with contextlib.suppress(Exception):
            self.runner.driver.release(self.id, self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)


class Runner:
    """An engine execdriver with its state under `root`."""

    def __init__(self, name: str, root: str) -> None:
        from engine.execdrivers import get_execdriver

        self.name = name
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.driver = get_execdriver(name, root)
        self.runtime = dict(self.driver.status()).get("Runtime", name)

    def start(self, rootfs: str, argv: list[str], *, capture: bool) -> Process:
        from engine.execdrivers import ProcessSpec

        container_id = f"bench-{os.getpid()}-{next(_serial)}"
        state_dir = os.path.join(self.root, container_id)
        os.makedirs(state_dir)
        stdout_fd = None
        stdout_path = os.devnull
        if capture:
            stdout_path = os.path.join(state_dir, "stdout.fifo")
            os.mkfifo(stdout_path)
            stdout_fd = os.open(stdout_path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            handle = self.driver.start(
                container_id,
                ProcessSpec(rootfs=rootfs, args=argv),
                state_dir,
                stdout_path,
                os.path.join(state_dir, "stderr.log"),
            )
        except BaseException:
            if stdout_fd is not None:
                os.close(stdout_fd)
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        return Process(self, container_id, state_dir, handle, stdout_fd)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def load(name: str, root: str) -> Runner:
    """A runner for execdriver `name` ("oci" or "native"), or ExecUnavailable."""
    try:
        import engine.execdrivers  # noqa: F401
    except ImportError as exc:
        raise ExecUnavailable(f"the engine's execdrivers are not available ({exc})") from None
    try:
        return Runner(name, root)
    except Exception as exc:
        raise ExecUnavailable(f"execdriver {name!r} cannot run here: {exc}") from None

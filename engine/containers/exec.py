"""`docker exec`: processes started in a running container, and the instances that describe them.

As in Docker, an exec instance is created (what to run, how), then started once, attached
(its output streamed to the caller, its input taken from the caller) or detached; its
exit code is kept for `exec inspect`. Instances live in the engine's memory, like
Docker's: the process is a child of the engine that started it. Finished instances are
forgotten after a while, and with their container.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, ContainerStartError, NoSuchExec, UsageError
from ..execdrivers import ProcessSpec
from ..execdrivers.base import STATUS_CANNOT_INVOKE, ExecProcess
from .stdio import ProcessIO

if TYPE_CHECKING:
    from .store import Containers

log = logging.getLogger(__name__)

STDOUT, STDERR = 1, 2
FORGET_AFTER = 300.0  # seconds a finished instance stays inspectable (Docker's exec GC interval)
CHUNK = 1 << 16


@dataclass
class ExecInstance:
    id: str
    container_id: str
    args: list[str]
    env: list[str]
    user: str
    workdir: str
    tty: bool
    open_stdin: bool
    detach_keys: str = ""
    attach_stdout: bool = True  # the client gets the process's stdout (AttachStdout)
    attach_stderr: bool = True
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    finished_at: float = 0.0
    process: ExecProcess | None = field(default=None, repr=False)
    io: ProcessIO | None = field(default=None, repr=False)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)

    def inspect(self) -> dict[str, Any]:
        """Docker's ExecInspect shape."""
        return {
            "ID": self.id,
            "ContainerID": self.container_id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "Pid": self.pid,
            "OpenStdin": self.open_stdin,
            "OpenStdout": self.attach_stdout,
            "OpenStderr": self.attach_stderr,
            "CanRemove": False,
            "DetachKeys": self.detach_keys,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.args[0], "arguments": self.args[1:],
                              "privileged": False, "user": self.user},
        }


class Execs:
    """The exec instances of one engine."""

    def __init__(self, store: Containers) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._instances: dict[str, ExecInstance] = {}

    def create(self, container_ref: str, args: list[str], *, env: list[str], user: str, workdir: str, tty: bool,
               interactive: bool, detach_keys: str = "", attach_stdout: bool = True,
               attach_stderr: bool = True) -> ExecInstance:
        if not args:
            raise UsageError("exec needs a command")
        if workdir and not workdir.startswith("/"):
            raise UsageError(f"the working directory must be an absolute path, got {workdir!r}")
        for item in env:
            if "=" not in item:
                raise UsageError(f"environment entries must be KEY=VALUE, got {item!r}")
        c = self.store.refresh(self.store.get(container_ref))
        if not c.state.running:
            raise Conflict(f"container {c.short_id} is not running")
        if c.state.paused:
            raise Conflict(f"container {c.short_id} is paused, unpause it first")
        instance = ExecInstance(secrets.token_hex(32), c.id, list(args), list(env), user, workdir, tty, interactive,
                                detach_keys, attach_stdout, attach_stderr)
        with self._lock:
            self._forget_old()
            self._instances[instance.id] = instance
        return instance

    def get(self, ref: str) -> ExecInstance:
        with self._lock:
            if ref in self._instances:
                return self._instances[ref]
            found = [e for i, e in self._instances.items() if ref and i.startswith(ref)]
        if len(found) != 1:
            raise NoSuchExec(ref)
        return found[0]

    def forget_container(self, container_id: str) -> None:
        with self._lock:
            for key in [k for k, e in self._instances.items() if e.container_id == container_id]:
                del self._instances[key]

    def _forget_old(self) -> None:
        now = time.time()
        for key in [k for k, e in self._instances.items() if e.finished_at and now - e.finished_at > FORGET_AFTER]:
            del self._instances[key]

    def check_startable(self, instance: ExecInstance) -> None:
        """Refuse at once what `start` would: a second start, a container stopped or paused."""
        if instance.started:
            raise Conflict(f"exec instance {instance.id[:12]} has already been started")
        c = self.store.refresh(self.store.get(instance.container_id))
        if not c.state.running:
            raise Conflict(f"container {c.short_id} is not running")
        if c.state.paused:
            raise Conflict(f"container {c.short_id} is paused, unpause it first")

    def start(self, instance: ExecInstance, console_size: tuple[int, int] | None = None) -> ExecInstance:
        """Start the process (once); its output waits in pipes until `pump` (or `run_detached`).
        `console_size` (rows, columns): its terminal's size from the first instruction."""
        self.check_startable(instance)
        with self._lock:
            if instance.started:
                raise Conflict(f"exec instance {instance.id[:12]} has already been started")
            instance.started = True
        c = self.store.get(instance.container_id)
        spec = ProcessSpec("", instance.args, _merged_env(c.env, instance.env), instance.workdir or c.workdir,
                           instance.user or c.user, c.hostname, tty=instance.tty, open_stdin=instance.open_stdin,
                           console_size=console_size if instance.tty else None)
        try:
            process = self.store.exec_in(c, spec)
        except BaseException:
            instance.exit_code = STATUS_CANNOT_INVOKE  # as Docker's: it could not be run
            instance.finished_at = time.time()
            instance.ended.set()
            raise
        instance.process = process
        instance.pid = process.pid
        instance.running = True
        instance.io = ProcessIO(f"exec {instance.id[:12]}", process.stdin, process.console, resize=process.resize)
        return instance

    def pump(self, instance: ExecInstance, write: Callable[[int, bytes], None]) -> int:
        """Copy the process's output to `write(stream, data)` until it ends; its exit code.

        A write that fails (the client went away) stops the copying, not the process,
        whose output is then discarded."""
        process = instance.process
        assert process is not None and instance.io is not None
        sources = {fd: STDOUT for fd in (process.console, process.stdout) if fd is not None}
        if process.stderr is not None:
            sources[process.stderr] = STDERR
        broken = False
        with selectors.DefaultSelector() as sel:
            for fd in sources:
                sel.register(fd, selectors.EVENT_READ)
            while sources:
                for key, _ in sel.select():
                    fd = int(key.fd)
                    data = _read(fd)
                    if not data:
                        sel.unregister(fd)
                        del sources[fd]
                        continue
                    if not broken:
                        try:
                            write(sources[fd], data)
                        except OSError:
                            broken = True
        code = process.wait()
        for fd in (process.stdout, process.stderr):
            if fd is not None:
                os.close(fd)
        instance.io.close()
        instance.exit_code = code
        instance.running = False
        instance.finished_at = time.time()
        instance.ended.set()
        return code

    def run_detached(self, instance: ExecInstance) -> None:
        """Start and let it run; its output is discarded (docker exec -d), its exit code kept."""
        self.start(instance)
        threading.Thread(target=self.pump, args=(instance, lambda _s, _d: None), name=f"exec-{instance.id[:12]}",
                         daemon=True).start()

    def start_error(self, instance: ExecInstance) -> ContainerStartError | None:
        """Why the command could not be run (after `pump`): Docker's 126/127 with the runtime's message."""
        process = instance.process
        if process is None or not process.start_error:
            return None
        return ContainerStartError(process.start_error, instance.exit_code or 126)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:  # a terminal whose last process ended
            return b""
        raise


def _merged_env(base: list[str], extra: list[str]) -> list[str]:
    merged = dict(item.split("=", 1) for item in base if "=" in item)
    merged.update(item.split("=", 1) for item in extra)
    return [f"{k}={v}" for k, v in merged.items()]

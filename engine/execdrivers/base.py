"""What every execdriver shares: the process spec, the handle, and the monitor process.

A container's process must outlive the engine process that started it (`strata run -d`
returns; an engine can be killed), and its exit status must still be known afterwards.
So the engine starts a small *monitor* (Docker's later containerd-shim) in a session of
its own: it puts the container's stdout/stderr straight on the log files (no copying
through the engine, so nothing is lost), starts the container's process (or the OCI
runtime) as its child, waits for it and writes the exit status to `<state_dir>/exit`.
Any engine, the one that started the container or a new one on the same root, waits by
polling a pidfd of the monitor and reads that file.

For the native driver the monitor is a fork of the engine (it must set up namespaces
before exec); for the OCI driver it is `/bin/sh` started with posix_spawn, which is
cheaper than forking a large Python process. Neither starts a new interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from ..errors import ExecError
from ..system.host import DEFAULT_PATH
from . import linux, terminal
from .settings import Settings

EXIT_FILE = "exit"
PID_FILE = "pid"
SYNC_FD = 3  # in the monitor and the container's first process: the start-report pipe
CONSOLE_FD = 4  # in the native monitor and its child: the socket the terminal's master is sent on

# Exit statuses with Docker's meanings.
STATUS_CANNOT_INVOKE = 126
STATUS_NOT_FOUND = 127
STATUS_LOST = 255


@dataclass
class ProcessSpec:
    """What to run and where: everything both execdrivers need, nothing driver-specific."""

    rootfs: str
    args: list[str]
    env: list[str] = field(default_factory=lambda: [DEFAULT_PATH])
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    network: str = "none"  # "none": a new network namespace with only lo; "host": the host's;
    # "netns": join the namespace file `netns_path` (a bridged container's, set up by the engine)
    netns_path: str = ""
    tty: bool = False  # a terminal for stdin/stdout/stderr (`Handle.console` is its master)
    open_stdin: bool = False  # a pipe for stdin (`Handle.stdin` is its write end)
    console_size: tuple[int, int] | None = None  # (rows, columns) of that terminal from the start
    settings: Settings = field(default_factory=Settings)

    def validate(self) -> None:
        if not self.args:
            raise ExecError("no command given to run")
        if self.network not in ("none", "host", "netns"):
            raise ExecError(f"unknown network mode {self.network!r} (known: none, host, netns)")
        if (self.network == "netns") != bool(self.netns_path):
            raise ExecError("network mode netns needs a namespace path, and only it takes one")
        if not os.path.isabs(self.cwd):
            raise ExecError(f"the working directory must be absolute, got {self.cwd!r}")
        if not os.path.isdir(self.rootfs):
            raise ExecError(f"rootfs {self.rootfs!r} is not a directory")
        for item in self.env:
            if "=" not in item:
                raise ExecError(f"environment entries must be KEY=VALUE, got {item!r}")

    def env_dict(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.env)


class ExecProcess:
    """A process started in a running container (`docker exec`): its pid (a child of the
    engine: the runtime, or the native driver's relay in the container's namespaces) and
    the engine's ends of its stdio: pipes, or the master of its terminal."""

    def __init__(self, pid: int, *, stdin: int | None = None, stdout: int | None = None,
                 stderr: int | None = None, console: int | None = None, start_error: str = "") -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.console = console
        self.start_error = start_error  # why the command could not be exec'd (native knows at start)

    def resize(self, rows: int, cols: int) -> None:
        """Resize its terminal: the engine's master (the runtime or the pty passes it on)."""
        assert self.console is not None
        terminal.set_size(self.console, rows, cols)

    def wait(self) -> int:
        """Block until the process ends; its exit status as a shell reports it."""
        try:
            _, wait_status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return STATUS_LOST
        return status_code(wait_status)


class ExecPipes:
    """The pipes of an exec without a terminal: the child's ends (stdin, stdout, stderr) and the
    engine's. `ExecPipes.close_child_ends()` once the child has them."""

    def __init__(self, open_stdin: bool) -> None:
        self.stdin_read, self.stdin = os.pipe() if open_stdin else (os.open(os.devnull, os.O_RDONLY), None)
        self.stdout, self.stdout_write = os.pipe()
        self.stderr, self.stderr_write = os.pipe()

    @property
    def child_ends(self) -> tuple[int, int, int]:
        return self.stdin_read, self.stdout_write, self.stderr_write

    def close_child_ends(self) -> None:
        for fd in self.child_ends:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_all(self) -> None:
        self.close_child_ends()
        for fd in (self.stdin, self.stdout, self.stderr):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def process(self, pid: int, start_error: str = "") -> ExecProcess:
        return ExecProcess(pid, stdin=self.stdin, stdout=self.stdout, stderr=self.stderr, start_error=start_error)


@dataclass(frozen=True)
class ExitStatus:
    """How the container's process ended: `code` as a shell reports it (128+N for signal N)."""

    code: int
    finished_at: float
    error: str = ""


def _proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: tells a pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(raw[raw.rindex(b")") + 2 :].split()[19])


def read_exit(state_dir: str) -> ExitStatus | None:
    """The monitor's record: the exit code as text; the file's mtime is when it ended.

    Readers look only after the monitor has exited, so the file is complete (a monitor
    killed while writing it leaves something unparsable: reported as lost).
    """
    path = os.path.join(state_dir, EXIT_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
            finished = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None
    try:
        return ExitStatus(int(raw.strip()), finished)
    except ValueError:
        return ExitStatus(STATUS_LOST, finished, f"the monitor's exit record is unreadable: {raw[:100]!r}")


def status_code(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def report_start_error(message: str, code: int) -> NoReturn:
    """In the container's first process, before exec: tell the engine why, and exit."""
    with contextlib.suppress(OSError):
        os.write(SYNC_FD, b"error " + message.replace("\n", " ").encode(errors="replace")[:3000] + b"\n")
    with contextlib.suppress(OSError):
        os.write(2, f"strata: {message}\n".encode(errors="replace"))
    os._exit(code)


def exec_process(args: list[str], env: dict[str, str]) -> NoReturn:
    """execvp in the container's environment; a failure becomes Docker's 127/126 status."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; exec would keep that
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(args[0], args, env)
    except FileNotFoundError:
        report_start_error(f'exec: "{args[0]}": executable file not found in $PATH', STATUS_NOT_FOUND)
    except OSError as exc:
        report_start_error(f'exec: "{args[0]}": {exc.strerror}', STATUS_CANNOT_INVOKE)


@dataclass
class MonitorInfo:
    """What an engine persists to find a running container again."""

    monitor_pid: int
    monitor_start: int | None
    pid: int | None  # the container's first process, host pid (None until known)

    def to_json(self) -> dict[str, Any]:
        return {"monitor_pid": self.monitor_pid, "monitor_start": self.monitor_start, "pid": self.pid}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> MonitorInfo:
        return cls(int(raw["monitor_pid"]), raw.get("monitor_start"), raw.get("pid"))


def spawn_monitor(
    state_dir: str,
    stdout_path: str,
    stderr_path: str,
    start_child: Callable[[], NoReturn],
    *,
    new_pid_namespace: bool = False,
    stdin: int | None = None,
    console: int | None = None,
) -> tuple[int, int, str]:
    """Fork the monitor; it forks `start_child` and waits for it.

    `stdin` (a pipe's read end) becomes the child's stdin instead of /dev/null; `console`
    (a socket) is the child's CONSOLE_FD, on which it sends its terminal's master.
    Returns (monitor pid, child pid, start error). The call returns once the child has
    exec'd (the sync pipe is close-on-exec) or reported why it could not.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    monitor = os.fork()
    if monitor == 0:
        _monitor_main(state_dir, write_end, lambda: _monitor_setup(stdout_path, stderr_path, write_end, start_child,
                                                                   new_pid_namespace, stdin, console))
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    report = b"".join(chunks).decode(errors="replace")
    lines = report.splitlines()
    pids = [int(line[4:]) for line in lines if line.startswith("pid ")]
    errors = [line[6:] for line in lines if line.startswith("error ")]
    if not pids:
        os.waitpid(monitor, 0)
        raise ExecError(f"the container monitor failed before starting the process: {report or 'no report'}")
    return monitor, pids[0], "; ".join(errors)


def _monitor_main(state_dir: str, write_end: int, setup: Callable[[], int]) -> NoReturn:
    """The monitor: `setup` detaches it and forks the child; then it waits and records the status."""
    try:
        try:
            child = setup()
        except BaseException as exc:  # before the child exists: tell the engine, which raises
            os.write(write_end, f"fatal {exc}\n".encode(errors="replace"))
            return
        os.write(SYNC_FD, b"pid %d\n" % child)
        os.close(SYNC_FD)
        _, wait_status = os.waitpid(child, 0)
        with open(os.path.join(state_dir, EXIT_FILE), "wb") as f:
            f.write(b"%d\n" % status_code(wait_status))
    finally:
        os._exit(0)


def _monitor_setup(
    stdout_path: str,
    stderr_path: str,
    write_end: int,
    start_child: Callable[[], NoReturn],
    new_pid_namespace: bool,
    stdin: int | None,
    console: int | None,
) -> int:
    """Detach, put the log files on fds 1 and 2 (and stdin on 0), fork the child; returns its pid."""
    os.setsid()  # no terminal signals; survives the engine's process group
    linux.set_process_name("strata-monitor")
    null = os.open("/dev/null", os.O_RDWR)
    out = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    place_fds([null if stdin is None else stdin, out, err, write_end, console])
    os.set_inheritable(SYNC_FD, False)
    if new_pid_namespace:
        linux.unshare(linux.CLONE_NEWPID)
    child = os.fork()
    if child == 0:
        try:
            start_child()
        except BaseException as exc:  # anything before exec: report, never return
            report_start_error(str(exc) or type(exc).__name__, STATUS_CANNOT_INVOKE)
    return child


def place_fds(fds: list[int | None]) -> None:
    """In a child: make fd i a copy of fds[i] (None: nothing there) and close every higher fd.

    Every source is first copied above all targets, so one whose number is another's
    target is not lost to an earlier dup2."""
    lifted = [None if fd is None else fcntl.fcntl(fd, fcntl.F_DUPFD, 10 + len(fds)) for fd in fds]
    for target, fd in enumerate(lifted):
        if fd is not None:
            os.dup2(fd, target)
        else:
            with contextlib.suppress(OSError):
                os.close(target)
    os.closerange(len(fds), os.sysconf("SC_OPEN_MAX"))


# The OCI runtime's monitor is a shell, not a fork of the engine: spawning /bin/sh costs
# one vfork+exec, while forking a large Python process copies its page tables twice.
SHELL_MONITOR = 'exit_file=$1; shift; "$@"; echo $? > "$exit_file"'


def spawn_shell_monitor(
    state_dir: str, stdout_path: str, stderr_path: str, argv: list[str], *, stdin: int | None = None,
    terminal: str | None = None,
) -> int:
    """posix_spawn a `sh` that runs `argv` (the runtime) with the logs as stdout/stderr, in
    a session of its own, and writes its exit status to the exit file; returns its pid.

    `stdin` (a pipe's read end) replaces /dev/null; `terminal` (a pty's slave path) is all
    three instead, opened after setsid so that it is the session's controlling terminal:
    a resize of its master then signals SIGWINCH to the runtime, which passes it on."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    actions: list[tuple] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0) if stdin is None else (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout_path, flags, 0o640),
        (os.POSIX_SPAWN_OPEN, 2, stderr_path, flags, 0o640),
    ]
    if terminal is not None:
        actions = [(os.POSIX_SPAWN_OPEN, 0, terminal, os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
                   (os.POSIX_SPAWN_DUP2, 0, 2)]
    argv = ["/bin/sh", "-c", SHELL_MONITOR, "strata-monitor", os.path.join(state_dir, EXIT_FILE), *argv]
    try:
        return os.posix_spawn(
            "/bin/sh", argv, os.environ, file_actions=actions, setsid=True, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
        )
    except OSError as exc:
        raise ExecError(f"cannot start the container's monitor: {exc}") from None


def wait_for_exit(info: MonitorInfo, timeout: float | None, *, child: bool = False) -> bool:
    """True once the monitor has ended, False if `timeout` seconds passed first.

    A pidfd works for any process, not only children, so an engine that did not start
    the container (or a `logs -f` that holds no engine) waits the same way.
    """
    try:
        fd = os.pidfd_open(info.monitor_pid)
    except ProcessLookupError:
        return True
    try:
        if not child and _proc_start_time(info.monitor_pid) != info.monitor_start:
            return True  # that pid is another process now
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


class Handle:
    """A started container process: wait for it, signal it, read how it ended.

    Works the same in the engine that started it (the monitor is its child, reaped here)
    and in a later engine that only knows the persisted `MonitorInfo`.
    """

    def __init__(self, driver: ExecDriver, container_id: str, state_dir: str, info: MonitorInfo, *, child: bool):
        self.driver = driver
        self.id = container_id
        self.state_dir = state_dir
        self.info = info
        self._child = child
        self._exit: ExitStatus | None = None
        self.start_error = ""  # why the process could not be exec'd, when the driver knows at start
        # Held only by the engine that started the process (an fd cannot be persisted):
        self.stdin: int | None = None  # write end of the process's stdin pipe (open_stdin)
        self.console: int | None = None  # master of the process's terminal (tty)

    @property
    def monitor_pid(self) -> int:
        return self.info.monitor_pid

    def _monitor_alive(self) -> bool:
        if self._child:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.info.monitor_pid, os.WNOHANG)[0] == 0:
                    return True
                self._child = False
            return False
        start = _proc_start_time(self.info.monitor_pid)
        return start is not None and start == self.info.monitor_start and process_alive(self.info.monitor_pid)

    def pid(self, timeout: float = 5.0) -> int | None:
        """The container's first process (host pid), or None once it has ended."""
        if self.info.pid is None:
            self.info.pid = self.driver.container_pid(self, timeout)
        return self.info.pid

    def running(self) -> bool:
        return self.exit_status() is None

    def exit_status(self) -> ExitStatus | None:
        """How it ended, or None while it runs; never blocks."""
        if self._exit is None and not self._monitor_alive():
            self._exit = self._collect()
        return self._exit

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Block until the process ends (None if `timeout` seconds pass first)."""
        if self._exit is not None:
            return self._exit
        if not wait_for_exit(self.info, timeout, child=self._child):
            return None
        if self._child:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.info.monitor_pid, 0)
            self._child = False
        self._exit = self._collect()
        return self._exit

    def _collect(self) -> ExitStatus:
        status = read_exit(self.state_dir)
        if status is None:
            return ExitStatus(STATUS_LOST, time.time(), "exit status lost: the container's monitor process died")
        return self.driver.interpret(self, status)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the container's first process (as `docker kill` does)."""
        if self.exit_status() is not None:
            raise ExecError(f"container {self.id} is not running")
        pid = self.pid()
        if pid is None:
            raise ExecError(f"container {self.id} is not running")
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            raise ExecError(f"container {self.id} is not running") from None


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (this sandbox's init may never reap one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return False
    return raw[raw.rindex(b")") + 2 : raw.rindex(b")") + 3] != b"Z"


class ExecDriver(ABC):
    """Base of the execdrivers: `start` a ProcessSpec, `attach` to one a past engine started."""

    name: ClassVar[str]

    def __init__(self, root: str, options: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.options = dict(options or {})

    @abstractmethod
    def start(self, container_id: str, spec: ProcessSpec, state_dir: str, stdout_path: str, stderr_path: str) -> Handle:
        """Start the process; returns once it runs (or has failed, seen at wait)."""

    def attach(self, container_id: str, state_dir: str, info: MonitorInfo) -> Handle:
        return Handle(self, container_id, state_dir, info, child=False)

    @abstractmethod
    def exec(self, handle: Handle, spec: ProcessSpec) -> ExecProcess:
        """Start `spec` (args, env, cwd, user, tty, open_stdin; rootfs is the container's) in
        the running container of `handle`; returns once it runs or failed to."""

    @abstractmethod
    def container_pid(self, handle: Handle, timeout: float) -> int | None:
        """Find the container's first process once it exists."""

    def resize(self, handle: Handle, rows: int, cols: int) -> None:
        """Resize the terminal of a container started with one: the engine's master."""
        assert handle.console is not None
        terminal.set_size(handle.console, rows, cols)

    def interpret(self, handle: Handle, status: ExitStatus) -> ExitStatus:
        """The exit status as users see it (the OCI driver maps runtime failures to 126/127)."""
        return status

    def release(self, container_id: str, state_dir: str) -> None:  # noqa: B027 - optional hook
        """Remove what the runtime keeps about an ended container (OCI state directories)."""

    @abstractmethod
    def status(self) -> list[tuple[str, str]]:
        """Rows `info` shows under Execution Driver."""

    def _new_handle(self, container_id: str, state_dir: str, monitor: int, pid: int | None) -> Handle:
        info = MonitorInfo(monitor, _proc_start_time(monitor), pid)
        return Handle(self, container_id, state_dir, info, child=True)


def prepare_state_dir(state_dir: str, *extra: str) -> None:
    """A fresh state directory: an old exit or pid file would be taken for this run's."""
    os.makedirs(state_dir, exist_ok=True)
    for name in (EXIT_FILE, PID_FILE, *extra):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(state_dir, name))

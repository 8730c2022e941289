"""The `oci` execdriver: an OCI bundle (config.json) run by runc or crun.

The bundle lives in the container's state directory; its root is the driver's mount of the
container layer. The runtime runs in the foreground (`runc run`) under a `/bin/sh`
monitor, so its exit status is the container's (128+N for signal N) and it removes its
own state when the container ends. Runtime errors go to `runtime.log` in the bundle; a
start failure (the runtime wrote no pid file) becomes Docker's status 127 or 126 with the
runtime's message.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping

from graphdrivers import mountutil as mu

from ..errors import ExecError, RuntimeNotSupported
from . import cgroups, linux, terminal, users
from .base import (
    PID_FILE,
    STATUS_CANNOT_INVOKE,
    STATUS_NOT_FOUND,
    ExecDriver,
    ExecPipes,
    ExecProcess,
    ExitStatus,
    Handle,
    ProcessSpec,
    prepare_state_dir,
    spawn_shell_monitor,
)
from .ocispec import oci_spec, process_env

RUNTIMES = ("runc", "crun")
RUNTIME_LOG = "runtime.log"

class OciDriver(ExecDriver):
    name = "oci"

    def __init__(self, root: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(root, options)
        wanted = self.options.get("exec.runtime", "runc")
        if wanted not in RUNTIMES:
            raise RuntimeNotSupported(f"OCI runtime {wanted!r}", f"known runtimes are {', '.join(RUNTIMES)}")
        path = shutil.which(wanted) or shutil.which(wanted, path="/usr/sbin:/sbin")
        if path is None:
            raise RuntimeNotSupported(f"OCI runtime {wanted!r}", f"no {wanted} executable on PATH")
        self.runtime = wanted
        self.runtime_path = path
        self.layout = cgroups.detect()
        # crun 1.8 on a hybrid host with cgroup2 controllers: run it where cgroup2 is hidden.
        self.hide_cgroup2 = wanted == "crun" and self.layout.crun_needs_hidden_cgroup2
        self.state_root = os.path.join(root, wanted)
        self._version: str | None = None

    def runtime_command(self, *args: str, log: str | None = None) -> list[str]:
        cmd = [self.runtime_path, "--root", self.state_root]
        if log is not None:
            cmd += ["--log", log, "--log-format", "json"]
        return [*cmd, *args]

    def enter_runtime_namespace(self) -> None:
        """In a child about to exec the runtime: apply the crun workaround when it is needed."""
        if self.hide_cgroup2:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, mu.MS_REC | mu.MS_PRIVATE)
            linux.umount(cgroups.UNIFIED, mu.MNT_DETACH)

    def start(self, container_id: str, spec: ProcessSpec, state_dir: str, stdout_path: str, stderr_path: str) -> Handle:
        spec.validate()
        user = users.resolve(spec.rootfs, spec.user)
        prepare_state_dir(state_dir, RUNTIME_LOG)
        with open(os.path.join(state_dir, "config.json"), "w") as f:
            f.write(json.dumps(oci_spec(spec, user, process_env(spec, user))))  # one write, not dump's many
        log = os.path.join(state_dir, RUNTIME_LOG)
        pid_file = os.path.join(state_dir, PID_FILE)
        cmd = self.runtime_command("run", "--bundle", state_dir, "--pid-file", pid_file, container_id, log=log)
        os.makedirs(self.state_root, exist_ok=True)
        cmd = self._in_runtime_namespace(cmd)
        # runc in the foreground copies its own stdio to the container's: a pipe for -i, and
        # for -t a host pty whose master the engine keeps (runc makes the container's pty).
        stdin_read, stdin_write = os.pipe() if spec.open_stdin and not spec.tty else (None, None)
        master, slave, slave_path = terminal.host_pty() if spec.tty else (None, None, None)
        if master is not None and spec.console_size:  # runc sizes the container's pty as its own
            terminal.set_size(master, *spec.console_size)
        try:
            monitor = spawn_shell_monitor(state_dir, stdout_path, stderr_path, cmd, stdin=stdin_read,
                                          terminal=slave_path)
        except BaseException:
            for fd in (stdin_write, master):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (stdin_read, slave):
                if fd is not None:
                    os.close(fd)
        handle = self._new_handle(container_id, state_dir, monitor, None)
        handle.stdin, handle.console = stdin_write, master
        return handle

    def _in_runtime_namespace(self, cmd: list[str]) -> list[str]:
        if self.hide_cgroup2:  # crun 1.8 on a hybrid host: a mount namespace without cgroup2
            hide = f'umount -l {cgroups.UNIFIED} 2>/dev/null; exec "$@"'
            # by its path: exec's posix_spawn, unlike the monitor's shell, does not search PATH
            unshare = shutil.which("unshare") or "/usr/bin/unshare"
            return [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", hide, "crun", *cmd]
        return cmd

    def resize(self, handle: Handle, rows: int, cols: int) -> None:
        """The host pty, and the container's own terminal: crun 1.8 does not pass resizes on."""
        super().resize(handle, rows, cols)
        _size_terminal_of(os.path.join(handle.state_dir, PID_FILE), rows, cols)

    def interpret(self, handle: Handle, status: ExitStatus) -> ExitStatus:
        """A runtime that failed before the process ran (no pid file): Docker's 127 or 126."""
        if status.code == 0 or os.path.exists(os.path.join(handle.state_dir, PID_FILE)):
            return status
        code, error = self._start_failure(status.code, os.path.join(handle.state_dir, RUNTIME_LOG))
        return ExitStatus(code, status.finished_at, error)

    def _start_failure(self, code: int, log: str) -> tuple[int, str]:
        error = runtime_errors(log) or f"{self.runtime} exited with status {code} before starting the process"
        not_found = "not found" in error or "no such file" in error.lower()
        return STATUS_NOT_FOUND if not_found else STATUS_CANNOT_INVOKE, error

    def exec(self, handle: Handle, spec: ProcessSpec) -> ExecProcess:
        """`runc exec --process` with the container's capabilities and limits; runc in the
        foreground copies its stdio (pipes, or a host pty) to the process's, as for `start`."""
        spec.validate()
        user = users.resolve(spec.rootfs, spec.user)
        self._wait_running(handle)
        name = f"exec-{secrets.token_hex(8)}"
        files = [os.path.join(handle.state_dir, f"{name}.{ext}") for ext in ("json", "pid", "log")]
        with open(files[0], "w") as f:
            f.write(json.dumps(oci_spec(spec, user, process_env(spec, user))["process"]))
        cmd = self._in_runtime_namespace(self.runtime_command("exec", "--process", files[0], "--pid-file", files[1],
                                                              handle.id, log=files[2]))
        try:
            return self._spawn_exec(cmd, spec, files)
        except BaseException:
            for path in files:  # no runtime ran: nobody waits to remove them
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            raise

    def _spawn_exec(self, cmd: list[str], spec: ProcessSpec, files: list[str]) -> ExecProcess:
        if spec.tty:
            master, slave, slave_path = terminal.host_pty()
            os.close(slave)
            if spec.console_size:  # runc sizes the process's pty as its own; crun reads consoleSize
                terminal.set_size(master, *spec.console_size)
            actions = [(os.POSIX_SPAWN_OPEN, fd, slave_path, os.O_RDWR, 0) for fd in (0, 1, 2)]
            try:  # a session of its own with the pty as controlling terminal: runc gets SIGWINCH
                pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions, setsid=True)
            except BaseException:
                os.close(master)
                raise
            return _OciExec(self, pid, files, console=master)
        pipes = ExecPipes(spec.open_stdin)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(pipes.child_ends)]
            pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions, setsid=True)
        except BaseException:
            pipes.close_all()
            raise
        pipes.close_child_ends()
        return _OciExec(self, pid, files, stdin=pipes.stdin, stdout=pipes.stdout, stderr=pipes.stderr)

    def _wait_running(self, handle: Handle, timeout: float = 10.0) -> None:
        """Until the runtime reports the container running: just after `start` it may still
        be creating it, and the runtime's exec refuses a container it does not know yet."""
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(self.runtime_command("state", handle.id), capture_output=True, text=True,
                                    preexec_fn=self.enter_runtime_namespace if self.hide_cgroup2 else None)
            with contextlib.suppress(ValueError):
                if result.returncode == 0 and json.loads(result.stdout).get("status") == "running":
                    return
            if handle.exit_status() is not None:
                raise ExecError(f"container {handle.id} is not running")
            if time.monotonic() > deadline:
                raise ExecError(f"{self.runtime} did not report container {handle.id} running in {timeout}s")
            time.sleep(0.01)

    def container_pid(self, handle: Handle, timeout: float) -> int | None:
        """The runtime writes the pid file once the process runs; wait for it (or the end)."""
        path = os.path.join(handle.state_dir, PID_FILE)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                with open(path) as f:
                    return int(f.read().strip())
            if handle.exit_status() is not None:
                return None
            if time.monotonic() > deadline:
                raise ExecError(f"{self.runtime} did not report the pid of container {handle.id} in {timeout}s")
            time.sleep(0.002)

    def release(self, container_id: str, state_dir: str) -> None:
        """A runtime killed with its container leaves state behind: `delete --force` it."""
        if not os.path.isdir(os.path.join(self.state_root, container_id)):
            return
        result = subprocess.run(
            self.runtime_command("delete", "--force", container_id),
            capture_output=True,
            text=True,
            preexec_fn=self.enter_runtime_namespace if self.hide_cgroup2 else None,
        )
        if result.returncode != 0 and os.path.isdir(os.path.join(self.state_root, container_id)):
            raise ExecError(f"{self.runtime} delete {container_id} failed: {result.stderr.strip()}")

    def version(self) -> str:
        if self._version is None:
            out = subprocess.run([self.runtime_path, "--version"], capture_output=True, text=True).stdout
            self._version = out.splitlines()[0] if out else self.runtime
        return self._version

    def status(self) -> list[tuple[str, str]]:
        rows = [
            ("Execution Driver", "oci"),
            ("Runtime", f"{self.runtime} ({self.runtime_path}): {self.version()}"),
            ("Cgroup layout", self.layout.describe()),
        ]
        if self.hide_cgroup2:
            rows.append(
                (
                    "Runtime workaround",
                    f"crun runs in a private mount namespace without {cgroups.UNIFIED}: crun 1.8 refuses hybrid "
                    "layouts whose cgroup2 has controllers; containers get cgroup v1 only",
                )
            )
        return rows


class _OciExec(ExecProcess):
    """A `runc exec`: a runtime that failed to start the process (no pid file) is Docker's
    126 or 127, with the runtime's message; its files go when it is waited for."""

    def __init__(self, driver: OciDriver, pid: int, files: list[str], **fds: int | None) -> None:
        super().__init__(pid, **fds)
        self.driver = driver
        self.files = files

    def resize(self, rows: int, cols: int) -> None:
        """The host pty, and the process's own terminal: crun 1.8 does not pass resizes on."""
        super().resize(rows, cols)
        _size_terminal_of(self.files[1], rows, cols)

    def wait(self) -> int:
        code = super().wait()
        if code != 0 and not os.path.exists(self.files[1]):
            code, self.start_error = self.driver._start_failure(code, self.files[2])
        for path in self.files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return code


def _size_terminal_of(pid_file: str, rows: int, cols: int) -> None:
    """Resize the terminal of the process the runtime's pid file names (not yet written: none)."""
    with contextlib.suppress(FileNotFoundError, ValueError), open(pid_file) as f:
        terminal.set_size_of_process(int(f.read().strip()), rows, cols)


def runtime_errors(log_path: str) -> str:
    """The error messages of a runtime's JSON log, joined."""
    messages = []
    with contextlib.suppress(FileNotFoundError), open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    messages.append(str(entry.get("msg", "")))
    return "; ".join(messages)

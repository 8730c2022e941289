"""The `native` execdriver: the engine sets up the container itself, as Docker's first one did.

No runtime binary is exec'd: the monitor (a fork of the engine) unshares a pid
namespace and forks the container's first process, which unshares mount, uts, ipc and
network namespaces, binds the rootfs, mounts minimal /proc /dev /sys, pivot_roots into
it, sets the hostname, brings lo up, drops capabilities and user, and execs. It is the
research baseline for how fast exec startup can be: two forks, a dozen syscalls, one exec.
Its processes join cgroups of their own (cgroupfs.py: no limits set, but they can be
measured, frozen and listed as runc's are).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import stat
from typing import NoReturn

from graphdrivers import mountutil as mu

from ..errors import ExecError
from . import linux, terminal, users
from .base import (
    CONSOLE_FD,
    PID_FILE,
    STATUS_CANNOT_INVOKE,
    SYNC_FD,
    ExecDriver,
    ExecPipes,
    ExecProcess,
    Handle,
    ProcessSpec,
    exec_process,
    place_fds,
    prepare_state_dir,
    report_start_error,
    spawn_monitor,
    status_code,
)
from .cgroupfs import ContainerCgroups

# (name, major, minor): the nodes every container gets in its /dev, as runc creates them.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))  # fmt: skip
MOUNT_POINTS = ("proc", "dev", "sys")


def sane_rlimits() -> list[tuple[int, int, int]]:
    """(resource, soft, hard): what a root without CAP_SYS_RESOURCE may set (hard never raised)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [(resource.RLIMIT_NOFILE, min(1024, hard), hard)]


class NativeDriver(ExecDriver):
    name = "native"

    def start(self, container_id: str, spec: ProcessSpec, state_dir: str, stdout_path: str, stderr_path: str) -> Handle:
        spec.validate()
        user = users.resolve(spec.rootfs, spec.user)
        env = spec.env_dict()
        env.setdefault("HOME", user.home)
        if spec.hostname:
            env.setdefault("HOSTNAME", spec.hostname)
        prepare_state_dir(state_dir)
        rlimits = sane_rlimits()

        groups = ContainerCgroups.create(container_id, state_dir)

        def start_child() -> NoReturn:
            groups.join()  # while the host's /sys/fs/cgroup is in view
            _container_init(spec, user, env, rlimits)

        stdin_read, stdin_write = os.pipe() if spec.open_stdin and not spec.tty else (None, None)
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if spec.tty else None
        try:
            monitor, pid, error = spawn_monitor(
                state_dir, stdout_path, stderr_path, start_child, new_pid_namespace=True, stdin=stdin_read,
                console=pair[1].fileno() if pair else None)
        except BaseException:
            _close(stdin_write)
            if pair:
                pair[0].close()
            ContainerCgroups.remove_recorded(state_dir)
            raise
        finally:  # the engine's copies of what the monitor inherited
            _close(stdin_read)
            if pair:
                pair[1].close()
        with open(os.path.join(state_dir, PID_FILE), "w") as f:
            f.write(str(pid))
        handle = self._new_handle(container_id, state_dir, monitor, pid)
        handle.start_error = error
        handle.stdin = stdin_write
        if pair:
            handle.console = terminal.receive_master(pair[0])
            pair[0].close()
        return handle

    def container_pid(self, handle: Handle, timeout: float) -> int | None:
        return handle.info.pid

    def exec(self, handle: Handle, spec: ProcessSpec) -> ExecProcess:
        """A fork of the engine joins the container's namespaces (setns) and forks the process,
        which is then in its pid namespace; the fork waits for it and exits with its status."""
        spec.validate()
        target = handle.pid()
        if target is None:
            raise ExecError(f"container {handle.id} is not running")
        user = users.resolve(spec.rootfs, spec.user)
        env = spec.env_dict()
        env.setdefault("HOME", user.home)
        groups = ContainerCgroups.of_process(target)
        namespaces = [os.open(f"/proc/{target}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in EXEC_NAMESPACES]
        report_read, report_write = os.pipe2(os.O_CLOEXEC)
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if spec.tty else None
        pipes = None if spec.tty else ExecPipes(spec.open_stdin)
        try:
            pid = os.fork()
            if pid == 0:
                _exec_relay(spec, user, env, groups, namespaces, report_write, pipes,
                            pair[1].fileno() if pair else None)
        finally:
            for fd in (*namespaces, report_write):
                os.close(fd)
            if pair:
                pair[1].close()
            if pipes:
                pipes.close_child_ends()
        report = _read_all(report_read)
        errors = [line[6:] for line in report.splitlines() if line.startswith("error ")]
        if pair:
            console = terminal.receive_master(pair[0])
            pair[0].close()
            return ExecProcess(pid, console=console, start_error="; ".join(errors))
        assert pipes is not None
        return pipes.process(pid, "; ".join(errors))

    def release(self, container_id: str, state_dir: str) -> None:
        ContainerCgroups.remove_recorded(state_dir)

    def status(self) -> list[tuple[str, str]]:
        return [("Execution Driver", "native"), ("Runtime", "none (namespaces + pivot_root in the engine)")]


EXEC_NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")  # mnt last: it changes what /proc paths mean


def _exec_relay(spec: ProcessSpec, user: users.User, env: dict[str, str], groups: ContainerCgroups,
                namespaces: list[int], report: int, pipes: ExecPipes | None, console: int | None) -> NoReturn:
    """The engine's fork for an exec: enter the container, fork the process, relay its status."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        stdio = pipes.child_ends if pipes is not None else (null, null, null)
        place_fds([*stdio, report, console, *namespaces])
        os.set_inheritable(SYNC_FD, False)
        groups.join()
        for fd in range(CONSOLE_FD + 1, CONSOLE_FD + 1 + len(namespaces)):
            linux.setns(fd)
            os.close(fd)
        child = os.fork()  # the pid namespace is the child's
        if child == 0:
            try:
                if console is not None:
                    terminal.become_console_of_new_pty(CONSOLE_FD)
                _become(spec, user)
                exec_process(spec.args, env)
            except BaseException as exc:
                report_start_error(str(exc) or type(exc).__name__, STATUS_CANNOT_INVOKE)
        os.close(SYNC_FD)
        with contextlib.suppress(OSError):
            os.close(CONSOLE_FD)
        _, wait_status = os.waitpid(child, 0)
        os._exit(status_code(wait_status))
    except BaseException as exc:
        report_start_error(str(exc) or type(exc).__name__, STATUS_CANNOT_INVOKE)


def _read_all(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _container_init(spec: ProcessSpec, user: users.User, env: dict[str, str], rlimits: list) -> NoReturn:
    """Pid 1 of the new pid namespace: build the container around itself, then exec."""
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
    if spec.network == "none":
        flags |= linux.CLONE_NEWNET
    linux.unshare(flags)
    os.umask(0)
    root = spec.rootfs
    linux.mount(None, "/", None, mu.MS_REC | mu.MS_PRIVATE)
    linux.mount(root, root, None, mu.MS_BIND | mu.MS_REC)  # pivot_root needs a mount point
    for name in MOUNT_POINTS:
        _ensure_dir(os.path.join(root, name), 0o755)
    linux.mount("proc", f"{root}/proc", "proc", mu.MS_NOSUID | mu.MS_NODEV | mu.MS_NOEXEC)
    _mount_dev(f"{root}/dev")
    linux.mount("sysfs", f"{root}/sys", "sysfs", mu.MS_RDONLY | mu.MS_NOSUID | mu.MS_NODEV | mu.MS_NOEXEC)
    os.chdir(root)
    linux.pivot_root(".", ".")  # the old root is stacked under the new one...
    linux.umount(".", mu.MNT_DETACH)  # ...and detached here: nothing of the host stays visible
    os.chdir("/")
    if spec.hostname:
        linux.sethostname(spec.hostname)
    if spec.network == "none":
        linux.loopback_up()
    if spec.tty:
        terminal.become_console_of_new_pty(CONSOLE_FD)
    for res, soft, hard in rlimits:
        resource.setrlimit(res, (soft, hard))
    if spec.cwd != "/":
        os.makedirs(spec.cwd, 0o755, exist_ok=True)  # as runc does; after pivot_root, so symlinks stay inside
    _become(spec, user)
    exec_process(spec.args, env)


def _become(spec: ProcessSpec, user: users.User) -> None:
    """Inside the container: drop capabilities, become the user, enter the working directory."""
    linux.limit_capabilities()
    if user.uid or user.gid or user.additional_gids:
        os.setgroups(list(user.additional_gids))
        os.setgid(user.gid)
        os.setuid(user.uid)
    try:
        os.chdir(spec.cwd)
    except OSError as exc:
        raise ExecError(f"cannot enter the working directory {spec.cwd!r}: {exc.strerror}") from None
    os.umask(0o022)


def _ensure_dir(path: str, mode: int) -> None:
    """Create a mount point the image lacks (never following a symlink out of the rootfs)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, mode)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ExecError(f"{path!r} in the rootfs is not a directory; cannot mount over it")


def _mount_dev(dev: str) -> None:
    linux.mount("tmpfs", dev, "tmpfs", mu.MS_NOSUID, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    linux.mount("devpts", f"{dev}/pts", "devpts", mu.MS_NOSUID | mu.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    os.mkdir(f"{dev}/shm", 0o1777)
    linux.mount("shm", f"{dev}/shm", "tmpfs", mu.MS_NOSUID | mu.MS_NODEV | mu.MS_NOEXEC, "mode=1777,size=65536k")

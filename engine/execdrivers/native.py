"""The `native` execdriver: the engine sets up the container itself, as Docker's first one did.

No runtime binary is exec'd: the monitor (a fork of the engine) unshares a pid
namespace and forks the container's first process, which unshares mount, uts, ipc and
network namespaces, binds the rootfs, mounts minimal /proc /dev /sys, pivot_roots into
it, sets the hostname, brings lo up, drops capabilities and user, and execs. It is the
research baseline for how fast exec startup can be: two forks, a dozen syscalls, one exec.
No cgroups are set up (the container shares the engine's), which is what keeps it lean.
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
    ExecDriver,
    Handle,
    ProcessSpec,
    exec_process,
    prepare_state_dir,
    spawn_monitor,
)

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

        def start_child() -> NoReturn:
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

    def status(self) -> list[tuple[str, str]]:
        return [("Execution Driver", "native"), ("Runtime", "none (namespaces + pivot_root in the engine)")]


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
    exec_process(spec.args, env)


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

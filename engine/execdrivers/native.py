"""The `native` execdriver: the engine sets up the container itself, as Docker's first one did.

No runtime binary is exec'd: the monitor (a fork of the engine) unshares a pid namespace
and forks the container's first process, which applies the same OCI spec the oci driver
gives runc (`ocispec.oci_spec`): it joins its cgroups (v1; made by the engine with the
spec's limits and device rules), unshares mount, uts, ipc and network namespaces (or joins the
spec's network namespace, a bridged container's), binds
the rootfs, makes the spec's mounts and device nodes, pivot_roots into it, writes the
sysctls, masks and write-protects the spec's paths, sets hostname and
rlimits, brings lo up, keeps the spec's capabilities, sets no_new_privs, drops to the
user and execs. It is the research baseline for how fast exec startup can be: two forks,
a few dozen syscalls, one exec.
Those cgroups (cgroups.py: /sys/fs/cgroup/<controller>/strata/<id>, with freezer, cpuacct,
blkio and the rest made even without limits) are where pause, stats, top and update find it;
exec joins its namespaces (setns) and cgroups; -t gives it a terminal of its own devpts.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import stat
from typing import Any, NoReturn

from graphdrivers import mountutil as mu

from ..errors import ExecError
from . import cgroups, linux, terminal, users
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
from .ocispec import DEFAULT_DEVICES, oci_spec, process_env

DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))  # fmt: skip
PR_SET_NO_NEW_PRIVS = 38
# Mount options that are flags (set, cleared); the rest are the filesystem's data.
FLAGS = {"ro": (mu.MS_RDONLY, 0), "rw": (0, mu.MS_RDONLY), "nosuid": (mu.MS_NOSUID, 0), "suid": (0, mu.MS_NOSUID),
         "nodev": (mu.MS_NODEV, 0), "dev": (0, mu.MS_NODEV), "noexec": (mu.MS_NOEXEC, 0), "exec": (0, mu.MS_NOEXEC),
         "bind": (mu.MS_BIND, 0), "rbind": (mu.MS_BIND | mu.MS_REC, 0), "relatime": (0, 0),
         "strictatime": (0, 0), "noatime": (mu.MS_NOATIME, 0),
         "rprivate": (0, 0), "private": (0, 0)}  # fmt: skip
_REMOUNTABLE = mu.MS_RDONLY | mu.MS_NOSUID | mu.MS_NODEV | mu.MS_NOEXEC | mu.MS_NOATIME


class NativeDriver(ExecDriver):
    name = "native"

    def start(self, container_id: str, spec: ProcessSpec, state_dir: str, stdout_path: str, stderr_path: str) -> Handle:
        spec.validate()
        user = users.resolve(spec.rootfs, spec.user)
        config = oci_spec(spec, user, process_env(spec, user))
        prepare_state_dir(state_dir)
        group = cgroups.V1Cgroup.create(container_id, config["linux"]["resources"])

        def start_child() -> NoReturn:
            _container_init(config, group)

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
            group.remove()
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
        process = oci_spec(spec, user, process_env(spec, user))["process"]  # the container's capabilities
        groups = ContainerCgroups.of_process(target)
        namespaces = [os.open(f"/proc/{target}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in EXEC_NAMESPACES]
        report_read, report_write = os.pipe2(os.O_CLOEXEC)
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if spec.tty else None
        pipes = None if spec.tty else ExecPipes(spec.open_stdin)
        try:
            pid = os.fork()
            if pid == 0:
                _exec_relay(process, groups, namespaces, report_write, pipes,
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
        cgroups.remove_container(container_id)

    def status(self) -> list[tuple[str, str]]:
        return [("Execution Driver", "native"),
                ("Runtime", "none (the OCI spec applied in the engine: namespaces, mounts, cgroup v1, pivot_root)")]


EXEC_NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")  # mnt last: it changes what /proc paths mean


def _exec_relay(process: dict[str, Any], groups: ContainerCgroups, namespaces: list[int], report: int,
                pipes: ExecPipes | None, console: int | None) -> NoReturn:
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
                    _own_terminal(process)
                _become(process)
                os.chdir(process["cwd"])
                exec_process(process["args"], dict(item.split("=", 1) for item in process["env"]))
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


def _container_init(config: dict[str, Any], group: cgroups.V1Cgroup) -> NoReturn:
    """Pid 1 of the new pid namespace: build the container around itself, then exec."""
    group.join()
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
    network = next((ns for ns in config["linux"]["namespaces"] if ns["type"] == "network"), None)
    if network is not None and "path" in network:  # a bridged container's namespace, set up by the engine
        fd = os.open(network["path"], os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
        finally:
            os.close(fd)
    elif network is not None:
        flags |= linux.CLONE_NEWNET
    linux.unshare(flags)
    os.umask(0)
    root = config["root"]["path"]
    section = config["linux"]
    linux.mount(None, "/", None, mu.MS_REC | mu.MS_PRIVATE)
    linux.mount(root, root, None, mu.MS_BIND | mu.MS_REC)  # pivot_root needs a mount point
    for m in config["mounts"]:
        _mount(root, m, group)
    _make_devices(root, section.get("devices", []))
    os.chdir(root)
    linux.pivot_root(".", ".")  # the old root is stacked under the new one...
    linux.umount(".", mu.MNT_DETACH)  # ...and detached here: nothing of the host stays visible
    os.chdir("/")
    for key, value in section.get("sysctl", {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    for path in section["maskedPaths"]:
        _mask(path)
    for path in section["readonlyPaths"]:
        _make_readonly(path)
    if config["root"]["readonly"]:
        linux.mount(None, "/", None, mu.MS_BIND | mu.MS_REMOUNT | mu.MS_RDONLY)
    if config["hostname"]:
        linux.sethostname(config["hostname"])
    if network is not None and "path" not in network:
        linux.loopback_up()
    process = config["process"]
    if process["terminal"]:
        _own_terminal(process)
    for limit in process["rlimits"]:
        resource.setrlimit(getattr(resource, limit["type"]), (limit["soft"], limit["hard"]))
    cwd = process["cwd"]
    if cwd != "/":
        with contextlib.suppress(OSError):  # as runc does; after pivot_root, so symlinks stay inside
            os.makedirs(cwd, 0o755, exist_ok=True)
    _become(process)
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise ExecError(f"cannot enter the working directory {cwd!r}: {exc.strerror}") from None
    os.umask(0o022)
    exec_process(process["args"], dict(item.split("=", 1) for item in process["env"]))


def _own_terminal(process: dict) -> None:
    """In the process about to exec: a new pty of the container's devpts as its stdio, sized
    before the command runs (not by a resize racing it)."""
    terminal.become_console_of_new_pty(CONSOLE_FD)
    if "consoleSize" in process:
        terminal.set_size(0, process["consoleSize"]["height"], process["consoleSize"]["width"])


def _become(process: dict[str, Any]) -> None:
    """Inside the container: keep the spec's capabilities, become its user, set no_new_privs."""
    caps = process["capabilities"]
    linux.drop_bounding(caps["bounding"])
    u = process["user"]  # switched while root's capabilities still allow it; setuid clears them
    if u["uid"] or u["gid"] or u.get("additionalGids"):
        os.setgroups(list(u.get("additionalGids", [])))
        os.setgid(u["gid"])
        os.setuid(u["uid"])
    if u["uid"] == 0:
        linux.set_capabilities(caps["effective"], caps["permitted"])
    if process["noNewPrivileges"]:
        linux.prctl(PR_SET_NO_NEW_PRIVS, 1)


def _in_root(root: str, path: str) -> str:
    """`path` of the container resolved under `root`, symlinks followed as if root were /."""
    resolved = root
    parts = [p for p in path.split("/") if p]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = os.path.dirname(resolved) if resolved != root else root
            continue
        candidate = os.path.join(resolved, part)
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(candidate).st_mode):
                hops += 1
                if hops > 40:
                    raise ExecError(f"too many symlinks resolving {path!r} in the rootfs")
                target = os.readlink(candidate)
                parts = [p for p in target.split("/") if p] + parts
                if target.startswith("/"):
                    resolved = root
                continue
        resolved = candidate
    return resolved


def _make_target(target: str, is_file: bool) -> None:
    if os.path.lexists(target):
        if is_file or stat.S_ISDIR(os.lstat(target).st_mode):
            return
        raise ExecError(f"{target!r} in the rootfs is not a directory; cannot mount over it")
    os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
    if is_file:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    else:
        os.mkdir(target, 0o755)


def _split_options(options: list[str]) -> tuple[int, int, str]:
    """(flags set, flags cleared, data) of OCI mount options."""
    set_flags, cleared, data = 0, 0, []
    for option in options:
        if option in FLAGS:
            on, off = FLAGS[option]
            set_flags, cleared = (set_flags | on) & ~off, (cleared | off) & ~on
        else:
            data.append(option)
    return set_flags, cleared, ",".join(data)


def _mount(root: str, m: dict[str, Any], group: cgroups.V1Cgroup) -> None:
    target = _in_root(root, m["destination"])
    flags, _, data = _split_options(m.get("options", []))
    if m["type"] == "cgroup":
        _make_target(target, False)
        linux.mount("tmpfs", target, "tmpfs", mu.MS_NOSUID | mu.MS_NODEV | mu.MS_NOEXEC, "mode=755")
        for controller, path in group.dirs.items():
            os.mkdir(os.path.join(target, controller), 0o755)
            linux.mount(path, os.path.join(target, controller), None, mu.MS_BIND)
            linux.mount(None, os.path.join(target, controller), None,
                        mu.MS_BIND | mu.MS_REMOUNT | (flags & _REMOUNTABLE))
        linux.mount(None, target, None, mu.MS_REMOUNT | (flags & _REMOUNTABLE), "mode=755")
        return
    if m["type"] == "bind" or flags & mu.MS_BIND:
        source = m["source"]
        if not os.path.exists(source):
            raise ExecError(f"bind source path does not exist: {source}")
        _make_target(target, not os.path.isdir(source))
        linux.mount(source, target, None, mu.MS_BIND | (flags & mu.MS_REC))
        if flags & _REMOUNTABLE:
            linux.mount(None, target, None, mu.MS_BIND | mu.MS_REMOUNT | (flags & _REMOUNTABLE))
        return
    _make_target(target, False)
    linux.mount(m["source"], target, m["type"], flags & ~(mu.MS_BIND | mu.MS_REC), data or None)
    if m["destination"] == "/dev":
        for name, link in DEV_LINKS:
            os.symlink(link, os.path.join(target, name))


def _make_devices(root: str, devices: list[dict[str, Any]]) -> None:
    nodes = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666} for p, ma, mi in DEFAULT_DEVICES]
    for d in [*nodes, *devices]:
        target = _in_root(root, d["path"])
        os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        kind = stat.S_IFCHR if d["type"] == "c" else stat.S_IFBLK
        os.mknod(target, kind | d["fileMode"], os.makedev(d["major"], d["minor"]))
        os.chown(target, d.get("uid", 0), d.get("gid", 0))


def _mask(path: str) -> None:
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return
    if is_dir:
        linux.mount("tmpfs", path, "tmpfs", mu.MS_RDONLY)
    else:
        linux.mount("/dev/null", path, None, mu.MS_BIND)


def _make_readonly(path: str) -> None:
    if not os.path.exists(path):
        return
    linux.mount(path, path, None, mu.MS_BIND | mu.MS_REC)
    linux.mount(None, path, None, mu.MS_BIND | mu.MS_REMOUNT | mu.MS_RDONLY | mu.MS_REC)

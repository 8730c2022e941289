"""Terminals for containers and exec'd processes: ptys, their sizes, passing a master.

A process started with a TTY must get a pty of its *own* devpts (the container's
/dev/pts), or `tty` inside cannot name it. The native driver makes that pty in the
container's first process (or the exec'd one), after it entered the container's mounts,
and sends the master to the engine over a socket (SCM_RIGHTS), as runc's console socket
does. The oci driver gives the runtime a host pty as its stdio; runc (in the foreground)
makes the container's pty itself, copies between the two and passes resizes on, so for
both drivers the engine holds one master it reads, writes and resizes. crun before 1.9
does not pass a resize on (containers/crun#1262), so the oci driver also sizes the
process's own terminal, found as its stdin (`set_size_of_process`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import struct
import termios

from ..errors import ExecError

_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431
MASTER_WAIT = 5.0  # seconds to wait for a process to send its terminal's master


def host_pty() -> tuple[int, int, str]:
    """(master, slave, slave path) of a new pty of the engine's devpts."""
    master, slave = os.openpty()
    return master, slave, os.ttyname(slave)


def set_size(fd: int, rows: int, cols: int) -> None:
    """Resize the terminal of `fd`; the kernel signals SIGWINCH to its foreground group."""
    if rows <= 0 or cols <= 0:
        raise ExecError(f"a terminal size must be positive, got {rows}x{cols}")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


PTS_MAJORS = range(136, 144)  # UNIX98 pty slaves (Documentation/admin-guide/devices.txt)


def set_size_of_process(pid: int, rows: int, cols: int) -> None:
    """Resize the terminal that is process `pid`'s stdin, if it is a pty slave (a process
    that has ended, or whose stdin is anything else, is left alone)."""
    path = f"/proc/{pid}/fd/0"
    try:
        st = os.stat(path)
        if not (stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in PTS_MAJORS):
            return
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return
    try:
        if os.fstat(fd).st_rdev == st.st_rdev:  # still that terminal
            set_size(fd, rows, cols)
    finally:
        os.close(fd)


def get_size(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal of `fd`."""
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def become_console_of_new_pty(send_on: int) -> None:
    """In a process about to exec, inside the container's mounts: make a pty of its devpts
    the process's controlling terminal and stdio, and send the master on the socket `send_on`."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    sock = socket.socket(fileno=send_on)
    try:
        socket.send_fds(sock, [b"m"], [master])
    finally:
        sock.close()
        os.close(master)


def receive_master(sock: socket.socket) -> int | None:
    """The master a process sent with `become_console_of_new_pty`, or None if it sent none
    (it failed before: its error is reported on the start pipe)."""
    sock.settimeout(MASTER_WAIT)
    with contextlib.suppress(OSError):
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        if fds:
            os.set_inheritable(fds[0], False)
            return fds[0]
    return None

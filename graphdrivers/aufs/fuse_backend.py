"""Mounting unions with the FUSE filesystem: one `fuse_main` process per mount.

Starting Python and importing pyfuse3 + trio costs ~130 ms, more than a whole `get`
should take, so the backend keeps one spare process that has already paid it: `mount`
hands the spare its request and starts the next spare once the mount answers. The
processes are ordinary children (same interpreter, reaped with `wait`), and `unmount`
works whether the process is alive or was killed: a dead FUSE daemon leaves a mount
that answers ENOTCONN, which unmounts like any other.
"""

from __future__ import annotations

import errno
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from typing import IO

from .. import mountutil
from ..errors import DriverError

READY_TIMEOUT = 30.0  # seconds a mount may take to answer (a loaded machine, 130 branches)
EXIT_TIMEOUT = 10.0
FUSE_TYPE = "fuse.strata-aufs"
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FuseMountError(DriverError):
    """The FUSE process could not mount or serve a union."""


class FuseProcess:
    """A `fuse_main` child and the unlinked temp file that collects its stderr."""

    def __init__(self) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "graphdrivers.aufs.fuse_main", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            start_new_session=True,  # a terminal's ^C must not kill mounts the driver still owns
            close_fds=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()[-2000:]

    def request(self, mountpoint: str, branches: list[str]) -> None:
        """Send the mount request; return once the kernel mount exists and answers."""
        assert self.popen.stdin is not None and self.popen.stdout is not None
        try:
            self.popen.stdin.write(json.dumps({"mountpoint": mountpoint, "branches": branches}).encode() + b"\n")
            self.popen.stdin.close()
        except BrokenPipeError:
            pass  # it died; the read below reports why
        ready, _, _ = select.select([self.popen.stdout], [], [], READY_TIMEOUT)
        line = self.popen.stdout.readline() if ready else b""
        self.popen.stdout.close()
        if line != b"ready\n":
            self.kill()
            detail = self.errors() or (f"no answer within {READY_TIMEOUT:.0f} s" if not ready else "it exited")
            raise FuseMountError(f"FUSE union for {mountpoint} did not start: {detail}")
        try:
            os.stat(mountpoint)  # answered by the process's own loop: the mount is live
        except OSError as exc:
            self.kill()
            detach(mountpoint)
            detail = f"({exc.strerror}): {self.errors()}"
            raise FuseMountError(f"FUSE union at {mountpoint} does not answer {detail}") from None

    def wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self.close()

    def close(self) -> None:
        for stream in (self.popen.stdin, self.popen.stdout, self.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def retire(self) -> None:
        """Stop a spare that never got a request (end of input makes it exit)."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass
        if not self.wait(EXIT_TIMEOUT):
            self.kill()
        self.close()


def detach(mountpoint: str) -> None:
    """Unmount, lazily if busy; a mount whose daemon died (ENOTCONN) goes the same way."""
    try:
        mountutil.umount_retry(mountpoint, attempts=25)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            mountutil.umount(mountpoint, mountutil.MNT_DETACH)


def is_dead_mount(mountpoint: str) -> bool:
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


class FuseBackend:
    name = "fuse"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: FuseProcess | None = None
        self._procs: dict[str, FuseProcess] = {}

    def mount(self, mountpoint: str, branches: list[str]) -> None:
        with self._lock:
            proc, self._spare = self._spare, None
        if proc is None or proc.popen.poll() is not None:
            if proc is not None:
                proc.close()
            proc = FuseProcess()
        proc.request(mountpoint, branches)
        with self._lock:
            self._procs[mountpoint] = proc
            if self._spare is None:
                self._spare = FuseProcess()

    def unmount(self, mountpoint: str) -> None:
        with self._lock:
            proc = self._procs.pop(mountpoint, None)
        detach(mountpoint)
        if proc is not None:
            if not proc.wait(EXIT_TIMEOUT):
                proc.kill()  # lazily detached while busy: its users get ENOTCONN, nothing leaks
            proc.close()

    def process(self, mountpoint: str) -> FuseProcess | None:
        return self._procs.get(mountpoint)

    def close(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
            left = list(self._procs)
        if spare is not None:
            spare.retire()
        for mountpoint in left:
            self.unmount(mountpoint)

    @staticmethod
    def recover(mount_root: str) -> list[str]:
        """Detach mounts under `mount_root` whose FUSE process is gone; returns them."""
        stale = [p for p in mountutil.mounts_under(mount_root) if p != mount_root and is_dead_mount(p)]
        for point in stale:
            mountutil.umount(point, mountutil.MNT_DETACH)
        return stale

"""Mounting unions with the FUSE filesystem: one `fuse_main` process per mount.

Starting Python and importing the union filesystem costs tens of milliseconds of CPU,
much of what a whole `get` may take, so the backend starts one zygote (`fuse_main --zygote`, the same
interpreter) on first use and asks it to fork a process per mount. The backend tracks
each mount process through a pidfd (it is the zygote's child, reaped by the kernel), so
`unmount` can wait for it to exit, and works whether the process is alive or was killed:
a dead FUSE daemon leaves a mount that answers ENOTCONN, which unmounts like any other.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from .. import mountutil
from ..errors import FuseMountError

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds a mount may take to answer (a loaded machine, 130 branches)
EXIT_TIMEOUT = 10.0
READ_AHEAD_KB = 4096
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MountProcess:
    """The process serving one mount, watched through a pidfd (no pid-reuse races)."""

    def __init__(self, pid: int, passthrough: bool) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.passthrough = passthrough  # the kernel passes file data through to the branches

    def wait(self, timeout: float) -> bool:
        """Whether the process has exited within `timeout` seconds."""
        ready, _, _ = select.select([self.pidfd], [], [], timeout)
        return bool(ready)

    def kill(self) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait(EXIT_TIMEOUT)

    def close(self) -> None:
        os.close(self.pidfd)


class Zygote:
    """`fuse_main --zygote --server S`: forks a mount process per request; its stderr goes
    to an unlinked temp file."""

    def __init__(self, server: str) -> None:
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "graphdrivers.aufs.fuse_main", "--zygote", "--server", server],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            bufsize=0,
            start_new_session=True,  # a terminal's ^C must not kill mounts the driver still owns
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()[-2000:]

    def request(self, mountpoint: str, branches: list[str], *, passthrough: bool, lazy: dict[int, str],
                lazy_timeout: float, lazy_prefetch: bool) -> MountProcess:
        """Have a process mount the union; return once the mount answers."""
        assert self.popen.stdin is not None
        request = {"mountpoint": mountpoint, "branches": branches, "passthrough": passthrough,
                   "lazy": lazy, "lazy_timeout": lazy_timeout, "lazy_prefetch": lazy_prefetch}
        try:
            self.popen.stdin.write(json.dumps(request).encode() + b"\n")
        except BrokenPipeError:
            raise FuseMountError(f"the FUSE zygote is gone: {self.errors()}") from None
        line = self._readline(READY_TIMEOUT)
        if not line:
            # no answer: a late one would be taken for the next request's, so retire this zygote
            log.warning("FUSE zygote gave no answer for %s within %.0f s; retiring it", mountpoint, READY_TIMEOUT)
            self.popen.kill()
            detach(mountpoint)
        if not line.startswith("ready "):
            reason = line.removeprefix("error ") or f"no answer within {READY_TIMEOUT:.0f} s"
            raise FuseMountError(f"FUSE union for {mountpoint} did not start: {reason} {self.errors()}".strip())
        _, pid, data = line.split()
        proc = MountProcess(int(pid), data == "passthrough")
        try:
            st = os.stat(mountpoint)  # answered by the new process's loop: the mount is live
            _raise_readahead(st.st_dev)
        except OSError as exc:
            proc.kill()
            proc.close()
            detach(mountpoint)
            raise FuseMountError(
                f"FUSE union at {mountpoint} does not answer ({exc.strerror}): {self.errors()}"
            ) from None
        return proc

    def _readline(self, timeout: float) -> str:
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        data = b""
        while not data.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()

    def stop(self) -> None:
        """End of input stops the zygote; mounts it started are not affected."""
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()
        try:
            self.popen.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.stderr.close()


def _raise_readahead(dev: int) -> None:
    """Let the kernel read ahead 4 MiB instead of 128 KiB, so a sequential read becomes
    1 MiB requests (the most one FUSE request carries) instead of 128 KiB ones."""
    try:
        with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb", "w") as f:
            f.write(str(READ_AHEAD_KB))
    except OSError:
        pass  # only speed is lost


def detach(mountpoint: str) -> None:
    """Unmount, lazily if busy; a mount whose daemon died (ENOTCONN) goes the same way."""
    try:
        mountutil.umount_retry(mountpoint, attempts=25)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            mountutil.umount(mountpoint, mountutil.MNT_DETACH)


def is_dead_mount(mountpoint: str) -> bool:
    """ENOTCONN: its FUSE process is gone. statfs always reaches the process (a stat may
    be answered from the kernel's attribute cache)."""
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


class FuseBackend:
    """strata's FUSE union filesystem, one process per mount (a `UnionBackend`), served by
    the direct server or by pyfuse3 (`server`)."""

    name = "fuse"
    max_branches: int | None = None
    serves_lazy = True

    def __init__(self, *, passthrough: bool, server: str = "direct", lazy_timeout: float = 5.0,
                 lazy_prefetch: bool = True) -> None:
        self.server = server
        self.lazy_timeout = lazy_timeout  # seconds a read may wait for a lazy layer's registry
        self.lazy_prefetch = lazy_prefetch  # fetch lazy layers' files in the background too
        self.passthrough = passthrough  # asked for; a mount serves data itself where the kernel cannot
        self.refused: bool | None = None  # did the kernel refuse passthrough? (None: no mount yet)
        self._lock = threading.Lock()  # one request at a time: answers come back on one pipe
        self._zygote: Zygote | None = None
        self._procs: dict[str, MountProcess] = {}

    def mount(self, mountpoint: str, branches: list[str], mount_label: str = "",
              lazy: dict[int, str] | None = None) -> None:
        """`mount_label` is ignored: a FUSE mount has no SELinux context option here.
        `lazy`: branch index -> state directory of a lazy layer (its process fetches)."""
        with self._lock:
            if self._zygote is not None and not self._zygote.alive():
                self._zygote.stop()
                self._zygote = None
            if self._zygote is None:
                self._zygote = Zygote(self.server)
                log.debug("started FUSE zygote %d", self._zygote.popen.pid)
            proc = self._procs[mountpoint] = self._zygote.request(
                mountpoint, branches, passthrough=self.passthrough, lazy=lazy or {}, lazy_timeout=self.lazy_timeout,
                lazy_prefetch=self.lazy_prefetch,
            )
            self.refused = self.passthrough and not proc.passthrough

    def probe(self, scratch: str) -> None:
        """Mount an empty union in `scratch` once, so data_path() can say what this kernel
        does rather than what was asked."""
        shutil.rmtree(scratch, ignore_errors=True)  # a probe a crash interrupted
        branch, mnt = os.path.join(scratch, "branch"), os.path.join(scratch, "mnt")
        os.makedirs(branch)
        os.makedirs(mnt)
        try:
            self.mount(mnt, [branch])
            self.unmount(mnt)
        finally:
            shutil.rmtree(scratch)

    def describe(self, scratch: str) -> str:
        if self.passthrough and self.refused is None:
            self.probe(scratch)  # say what the kernel does, not what was asked
        return f"fuse ({self.server}, {self.data_path()})"

    def data_path(self) -> str:
        """How file data reaches callers, as far as mounts have shown: `passthrough` (the
        kernel reads and writes the branch files) or `served` (by the FUSE process)."""
        if not self.passthrough:
            return "served"
        if self.refused:
            return "served; the kernel refused passthrough"
        return "passthrough"

    def unmount(self, mountpoint: str) -> None:
        with self._lock:
            proc = self._procs.pop(mountpoint, None)
        detach(mountpoint)
        if proc is not None:
            if not proc.wait(EXIT_TIMEOUT):
                log.warning("FUSE process %d for %s did not exit after unmount; killing it", proc.pid, mountpoint)
                proc.kill()  # lazily detached while busy: its users get ENOTCONN, nothing leaks
            proc.close()

    def forget(self, mountpoint: str) -> None:
        """The mount process runs on (it is the zygote's child, in the zygote's session, so
        neither this process's end nor the zygote's stops it) and exits when the mount goes."""
        with self._lock:
            proc = self._procs.pop(mountpoint, None)
        if proc is not None:
            proc.close()

    def process(self, mountpoint: str) -> MountProcess | None:
        """The process serving `mountpoint` (tests kill it to simulate a crash)."""
        return self._procs.get(mountpoint)

    def close(self) -> None:
        with self._lock:
            zygote, self._zygote = self._zygote, None
            left = list(self._procs)
        for mountpoint in left:
            self.unmount(mountpoint)
        if zygote is not None:
            zygote.stop()

    @staticmethod
    def recover(mount_root: str) -> list[str]:
        """Detach mounts under `mount_root` whose FUSE process is gone; returns them."""
        stale = [p for p in mountutil.mounts_under(mount_root) if p != mount_root and is_dead_mount(p)]
        for point in stale:
            mountutil.umount(point, mountutil.MNT_DETACH)
        return stale

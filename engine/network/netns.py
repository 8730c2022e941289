"""Network namespaces held by files, as `ip netns` and Docker's sandboxes keep them.

A bridged container's network namespace is made by the engine before the container
starts, bind-mounted on a file under the engine root, configured (veth, address, route)
and then joined by the execdriver (runc's `"path"` namespace, setns in the native one).
So the container's network is up before its first instruction, and it outlives an engine
that exits while the container runs; releasing it is unmounting the file.

A network namespace belongs to one thread, so everything done "inside" one runs in a
short-lived thread of its own: the caller's threads never change namespace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from graphdrivers import mountutil

from ..errors import NetworkError
from ..execdrivers import linux

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_in(path: str | None, fn: Callable[[], T]) -> T:
    """`fn()` in a thread inside the namespace file `path` (None: a new, empty namespace,
    which is bind-mounted nowhere and ends with the thread unless `fn` keeps it)."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            if path is None:
                linux.unshare(linux.CLONE_NEWNET)
            else:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    linux.setns(fd, linux.CLONE_NEWNET)
                finally:
                    os.close(fd)
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name="netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def create(path: str) -> None:
    """A new network namespace with lo up, held by a bind mount on `path`."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w"):
        pass

    def hold() -> None:
        linux.loopback_up()
        linux.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, mountutil.MS_BIND)

    try:
        run_in(None, hold)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise NetworkError(f"cannot create a network namespace at {path}: {exc}") from None


def remove(path: str) -> None:
    """Release the namespace (its interfaces go with it once no process uses it); idempotent."""
    if mountutil.is_mountpoint(path):
        mountutil.umount_retry(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_held(path: str) -> bool:
    return os.path.exists(path) and mountutil.is_mountpoint(path)

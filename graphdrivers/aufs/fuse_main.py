"""One FUSE union mount per process: `python -m graphdrivers.aufs.fuse_main`.

A process of its own per mount means a crash of the filesystem cannot take the engine
with it, and killing it is a clean way to simulate one. Two ways to run it:

- `fuse_main [--server direct|pyfuse3] MOUNTPOINT RW_BRANCH [RO_BRANCH ...]`: mount and
  serve until unmounted.
- `fuse_main --zygote [--server direct|pyfuse3]`: the driver's mount server. Starting Python and importing the
  union costs tens of milliseconds of CPU, a good part of what a whole `get` should
  take, so the zygote pays it once and forks one child per request. A request is one
  JSON line on stdin, `{"mountpoint": ..., "branches": [...], "passthrough": bool,
  "lazy": {branch index: lazy layer state dir}, "lazy_timeout": seconds, "lazy_prefetch": bool}`; the
  child that serves it answers `ready <pid> passthrough|served` (how file data moves; or
  `error <reason>`) on stdout. End of
  input stops the zygote; the mounts it started live on until they are unmounted.

`--server` picks the FUSE server (`unionfs/session.py`, the direct one, or
`unionfs/pyfuse3_server.py`); a zygote imports it before forking, so a mount does not
pay for importing pyfuse3 and trio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading

from ..lazy.layer import DEFAULT_TIMEOUT, Activity, LazyLayer
from .backend import FUSE_SERVERS
from .unionfs import session
from .unionfs.ops import UnionOperations
from .unionfs.tree import Union

# The mount table shows source strata-aufs and type fuse.strata-aufs, so stale mounts
# are recognisable. The mount allows setuid binaries and device nodes (a container
# rootfs needs them) and checks modes itself (default_permissions): root in a container
# sees normal permission semantics.
FSNAME = "strata-aufs"


def serve(mountpoint: str, branches: list[str], *, passthrough: bool = True, server: str = "direct",
          lazy: dict[int, str] | None = None, lazy_timeout: float = DEFAULT_TIMEOUT, prefetch: bool = True) -> None:
    """Mount with `server`, say `ready <pid> passthrough|served` on stdout, serve until unmounted.

    `lazy` maps branch indexes to the state directories of lazy layers: their files are
    fetched on first read, and (with `prefetch`) a thread fetches the rest meanwhile."""
    os.umask(0)  # modes come from the callers' requests, exactly
    layers = {i: LazyLayer(d, branches[i], timeout=lazy_timeout) for i, d in (lazy or {}).items()}
    ops = UnionOperations(Union(branches, layers))
    if layers and prefetch:
        start_prefetch(list(layers.values()), ops.lazy_activity)

    def ready() -> None:
        data = "passthrough" if ops.passthrough is not None else "served"
        os.write(1, f"ready {os.getpid()} {data}\n".encode())
        _to_devnull(1)

    if server == "pyfuse3":
        from .unionfs import pyfuse3_server

        pyfuse3_server.serve(ops, mountpoint, fsname=FSNAME, ready=ready)
    else:
        session.serve(ops, mountpoint, passthrough=passthrough, fsname=FSNAME, ready=ready)


def start_prefetch(layers: list[LazyLayer], activity: Activity) -> threading.Thread:
    """Fetch the lazy layers' files in a thread of this process: the files the TOCs mark
    as needed at start (before the prefetch landmark) at once, the base layer's first;
    then the rest, each file once readers have been quiet for a while (`Activity`); then
    each layer is completed (blob digest and diff id checked).

    In the mount's own process rather than a helper of its own: it already holds the
    layers' TOCs and state, it lives exactly as long as something uses the layers (no
    process to start, track or reap; an unmount or a kill ends it with the mount), and the
    per-file locks make several mounts of one layer share the work. A kill mid-fetch
    leaves at most an unmarked chunk, which the next mount fetches again."""
    stop = threading.Event()
    bottom_up = list(reversed(layers))

    def run() -> None:
        for layer in bottom_up:
            layer.fetch_files(layer.landmarked(), stop)
        for layer in bottom_up:
            layer.fetch_files(layer.rest(), stop, pause=lambda: activity.wait_idle(stop))
        for layer in bottom_up:
            with contextlib.suppress(OSError):  # logged; a later mount tries again
                layer.complete()

    thread = threading.Thread(target=run, name="strata-aufs-prefetch", daemon=True)
    thread.start()
    return thread


def _to_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, fd)
    os.close(devnull)


def zygote(server: str) -> int:
    """Fork a serving child per request line; children are reaped by the kernel."""
    if server == "pyfuse3":
        from .unionfs import pyfuse3_server  # noqa: F401  (imported once, inherited by every child)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            mountpoint, branches = request["mountpoint"], list(request["branches"])
            passthrough = bool(request.get("passthrough", True))
            lazy = {int(i): str(d) for i, d in (request.get("lazy") or {}).items()}
            timeout = float(request.get("lazy_timeout", DEFAULT_TIMEOUT))
            prefetch = bool(request.get("lazy_prefetch", True))
            pid = os.fork()
        except Exception as exc:
            os.write(1, f"error {exc}\n".encode())
            continue
        if pid == 0:
            _child(mountpoint, branches, passthrough, server, lazy, timeout, prefetch)
    return 0


def _child(mountpoint: str, branches: list[str], passthrough: bool, server: str, lazy: dict[int, str],
           lazy_timeout: float, prefetch: bool) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _to_devnull(0)  # the request pipe belongs to the zygote
    code = 0
    try:
        serve(mountpoint, branches, passthrough=passthrough, server=server, lazy=lazy, lazy_timeout=lazy_timeout,
              prefetch=prefetch)
    except BaseException as exc:
        message = f"cannot serve {mountpoint}: {exc}".replace("\n", " ")
        try:
            os.write(1, f"error {message}\n".encode())
        except OSError:
            pass
        print(f"strata-aufs: {message}", file=sys.stderr)
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)  # never return into the zygote's loop


def main(argv: list[str] | None = None) -> int:
    # the driver keeps this process's stderr and shows it when a mount fails
    logging.basicConfig(level=logging.WARNING, format="strata-aufs[%(process)d] %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m graphdrivers.aufs.fuse_main", description=__doc__.split("\n")[0])
    parser.add_argument("--zygote", action="store_true", help="fork a mount per JSON request line on stdin")
    parser.add_argument("--server", choices=FUSE_SERVERS, default="direct", help="which FUSE server answers")
    parser.add_argument("--no-passthrough", action="store_true", help="serve file data through this process")
    parser.add_argument("mountpoint", nargs="?")
    parser.add_argument("branches", nargs="*", help="writable branch first, then read-only ones, nearest first")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only an unmount (or a kill) ends a mount
    if args.zygote:
        return zygote(args.server)
    if not args.mountpoint or not args.branches:
        parser.error("give a mount point and at least the writable branch, or --zygote")
    mountpoint, branches = args.mountpoint, args.branches
    try:
        serve(mountpoint, branches, passthrough=not args.no_passthrough, server=args.server)
    except Exception as exc:
        print(f"strata-aufs: cannot serve {mountpoint}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

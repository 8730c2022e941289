"""One FUSE union mount per process: `python -m graphdrivers.aufs.fuse_main`.

A process of its own per mount means a crash of the filesystem cannot take the engine
with it, and killing it is a clean way to simulate one. Two ways to run it:

- `fuse_main MOUNTPOINT RW_BRANCH [RO_BRANCH ...]`: mount and serve until unmounted.
- `fuse_main --serve`: a pre-started spare. It imports pyfuse3 and trio (most of the
  start-up time), then waits for one JSON line on stdin, `{"mountpoint": ..., "branches":
  [...]}`, and serves that mount; end of input without a request means "not needed".

Either way it prints `ready` on stdout once the kernel mount exists, or an error on
stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import pyfuse3
import trio

from .unionfs.ops import UnionOperations
from .unionfs.tree import Union

FSNAME = "strata-aufs"
MOUNT_OPTIONS = frozenset(
    {
        "default_permissions",  # the kernel checks modes and owners: root in a container sees normal semantics
        "allow_other",
        f"fsname={FSNAME}",
        f"subtype={FSNAME}",  # the mount table type is fuse.strata-aufs, so stale mounts are recognisable
        "suid",  # a container rootfs needs setuid binaries and device nodes
        "dev",
    }
)


def serve(mountpoint: str, branches: list[str]) -> None:
    os.umask(0)  # modes come from the callers' requests, exactly
    union = Union(branches)
    pyfuse3.init(UnionOperations(union), mountpoint, set(MOUNT_OPTIONS))
    try:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        trio.run(pyfuse3.main)
    except BaseException:
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=False)  # the driver's umount ended the loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphdrivers.aufs.fuse_main", description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="wait for one mount request (JSON) on stdin")
    parser.add_argument("mountpoint", nargs="?")
    parser.add_argument("branches", nargs="*", help="writable branch first, then read-only ones, nearest first")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only an unmount (or a kill) ends a mount
    if args.serve:
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        request = json.loads(line)
        mountpoint, branches = request["mountpoint"], request["branches"]
    else:
        if not args.mountpoint or not args.branches:
            parser.error("give a mount point and at least the writable branch, or --serve")
        mountpoint, branches = args.mountpoint, args.branches
    try:
        serve(mountpoint, branches)
    except Exception as exc:
        print(f"strata-aufs: cannot serve {mountpoint}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures every test shares: loop-mounted backing filesystems, a driver per registered
name on the filesystem it asks for, and a session-wide check that nothing leaked."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

import graphdrivers
from graphdrivers import loopdev, mountutil
from graphdrivers.backing import LoopFilesystem

BACKING_SIZE = 8 << 30  # sparse: costs only what is written


# Every process this session starts inherits this variable, so the leak check can tell
# our helper processes (FUSE servers, registries, daemons) from those of other test runs
# on the same machine.
SESSION_MARK = "STRATA_TEST_SESSION"


def _ours(path: str | None, roots: tuple[str, ...]) -> bool:
    return path is not None and any(path == r or path.startswith(r + "/") for r in roots)


def _our_mounts(roots: tuple[str, ...]) -> set[str]:
    return {p for p, _, _ in mountutil.mount_table() if _ours(p, roots)}


def _loop_devices(roots: tuple[str, ...]) -> set[str]:
    found = set()
    for name in os.listdir("/sys/block"):
        if name.startswith("loop") and _ours(loopdev.backing_file(name), roots):
            found.add(f"/dev/{name}")
    return found


def _network_state() -> set[str]:
    """strata's links and nftables table in this (the machine's) network namespace: tests
    make bridges only inside namespaces of their own, so any here is a leak."""
    found = {f"link {name}" for name in os.listdir("/sys/class/net") if name.startswith(("strata", "br-", "stv"))}
    nft = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin")
    if nft and subprocess.run([nft, "list", "table", "ip", "strata"], capture_output=True).returncode == 0:
        found.add("nft table ip strata")
    return found


def _our_processes(mark: str) -> set[str]:
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or a kernel thread
            continue
        if f"{SESSION_MARK}={mark}".encode() in env:
            found.add(f"{pid} {args}")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if a test left a mount, a loop device or a helper process behind.

    Only what this session made counts (other test runs may share the machine): temporary
    directories are confined to this session's base temp dir (TMPDIR and tempfile point
    there), mounts and loop devices are looked for under it and /run/strata, and
    processes are recognised by the session mark in their environment.
    """
    session_tmp = tmp_path_factory.mktemp("tmp", numbered=False)
    roots = (os.path.realpath(session_tmp.parent), "/run/strata")
    mark = f"{os.getpid()}-{session_tmp.parent.name}"
    saved = (os.environ.get("TMPDIR"), os.environ.get(SESSION_MARK), tempfile.tempdir)
    os.environ["TMPDIR"] = tempfile.tempdir = str(session_tmp)
    os.environ[SESSION_MARK] = mark
    before = (_our_mounts(roots), _loop_devices(roots), _our_processes(mark), _network_state())
    yield
    after = (_our_mounts(roots), _loop_devices(roots), _our_processes(mark), _network_state())
    for key, value in (("TMPDIR", saved[0]), (SESSION_MARK, saved[1])):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    tempfile.tempdir = saved[2]
    kinds = ("mounts", "loop devices", "processes", "network state")
    leaked = [f"{kind}: {sorted(a - b)}" for kind, b, a in zip(kinds, before, after, strict=True) if a - b]
    if leaked:
        pytest.fail("tests leaked " + "; ".join(leaked), pytrace=False)


@pytest.fixture
def make_backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory: `make_backing("xfs")` -> a mounted LoopFilesystem, destroyed after the test."""
    made: list[LoopFilesystem] = []

    def make(fstype: str, size: int = BACKING_SIZE) -> LoopFilesystem:
        fs = LoopFilesystem(str(tmp_path_factory.mktemp(f"backing-{fstype}")), fstype, size).create()
        made.append(fs)
        return fs

    yield make
    for fs in reversed(made):
        fs.destroy()


@pytest.fixture
def xfs_prjquota(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty root on xfs mounted with project quotas, where vfs and overlay2 enforce `size`.

    Skips only when the kernel refuses the mount option (built without CONFIG_XFS_QUOTA).
    """
    directory = str(tmp_path_factory.mktemp("backing-xfs-prjquota"))
    try:
        fs = LoopFilesystem(directory, "xfs", 1 << 30, mount_options="prjquota").create()
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        pytest.skip("missing kernel backend: this kernel cannot mount xfs with prjquota (built without "
                    "CONFIG_XFS_QUOTA)")
    try:
        root = os.path.join(fs.mountpoint, "root")
        os.mkdir(root)
        yield root
    finally:
        fs.destroy()


# Variants of a registered driver that the conformance suite runs as drivers of their own:
# test name -> (driver name, options). aufs-pyfuse3 is the FUSE union served by pyfuse3.
DRIVER_VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "aufs-pyfuse3": ("aufs", {"aufs.backend": "fuse", "aufs.fuse_server": "pyfuse3"}),
}


def resolve_driver(name: str) -> tuple[str, dict[str, str]]:
    """The registered driver and options a `driver_name` parameter stands for."""
    return DRIVER_VARIANTS.get(name, (name, {}))


@pytest.fixture(params=graphdrivers.registered())
def driver_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def driver_root(driver_name: str, make_backing) -> str:
    """An engine root on the backing filesystem the driver registered for."""
    fs = make_backing(graphdrivers.registration(resolve_driver(driver_name)[0]).backing_fs)
    root = os.path.join(fs.mountpoint, "root")
    os.mkdir(root)
    return root


@pytest.fixture
def driver(driver_name: str, driver_root: str) -> Iterator[graphdrivers.Driver]:
    """A fresh driver of every registered kind, on the backing filesystem it registered for.

    Every registered driver must run on the project's machines (aufs and devmapper fall
    back to their FUSE and reflink backends), so a DriverNotSupported here is a failure.
    """
    name, options = resolve_driver(driver_name)
    d = graphdrivers.get_driver(name, root=driver_root, options=options)
    yield d
    d.cleanup()

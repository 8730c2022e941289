"""Floors: `tar -x` started before the clock, the FUSE mount floor, and the rootfs floors of
devmapper (FICLONE), aufs (FUSE mount + INIT) and btrfs (snapshot ioctl) in a real
`bench run --quick`."""

from __future__ import annotations

import io
import os
import tarfile

import pandas as pd
import pytest

from bench import results
from bench.floors import rootfs as rootfs_floors
from bench.floors.untar import Untar, UntarFailed, blocked_reading_stdin, fed
from graphdrivers import mountutil
from graphdrivers.aufs.unionfs.session import bare_mount

from .conftest import bench


def _layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/motd")
        info.mode, info.size, info.uid = 0o640, 6, 123
        tar.addfile(info, io.BytesIO(b"hello\n"))
        sub = tarfile.TarInfo("var/empty")
        sub.type, sub.mode = tarfile.DIRTYPE, 0o711
        tar.addfile(sub)
    return buf.getvalue()


def test_tar_is_running_and_waiting_on_its_stdin_before_the_clock(tmp_path) -> None:
    """The floor excludes tar's process start: before the first byte is written, tar
    exists, has finished starting up and sleeps in read(2) on its stdin."""
    dest = tmp_path / "d"
    with Untar(str(dest)) as untar:
        assert os.path.exists(f"/proc/{untar.pid}")
        assert blocked_reading_stdin(untar.pid)
        assert list(dest.iterdir()) == []  # nothing happened yet
        seconds = fed(untar, _layer_tar())
        assert untar.proc.returncode == 0 and not os.path.exists(f"/proc/{untar.pid}/syscall")
    assert seconds > 0
    assert (dest / "etc/motd").read_bytes() == b"hello\n"
    assert (dest / "etc/motd").stat().st_mode & 0o7777 == 0o640 and (dest / "etc/motd").stat().st_uid == 123
    assert (dest / "var/empty").stat().st_mode & 0o7777 == 0o711


def test_tar_fed_garbage_is_a_typed_error_with_its_words(tmp_path) -> None:
    with Untar(str(tmp_path / "d")) as untar, pytest.raises(UntarFailed, match="does not look like a tar archive"):
        fed(untar, b"not a tar" * 100)


def test_an_interrupted_tar_is_killed(tmp_path) -> None:
    untar = Untar(str(tmp_path / "d"))
    untar.close()
    assert untar.proc.returncode is not None


def test_fuse_bare_mount_negotiates_in_process_and_leaves_nothing(tmp_path) -> None:
    point = str(tmp_path / "m")
    os.mkdir(point)
    session = bare_mount(point, fsname="strata-floor-test")
    try:
        assert point in mountutil.mounts_under(str(tmp_path))
        with open("/proc/self/mountinfo") as f:
            assert any(f" {point} " in line and "fuse.strata-floor-test" in line for line in f)
    finally:
        mountutil.umount(point)
        session.close()
    assert mountutil.mounts_under(str(tmp_path)) == []


@pytest.fixture(scope="module")
def union_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    base = tmp_path_factory.mktemp("bench-floors")
    out, scratch = str(base / "out"), str(base / "scratch")
    proc = bench("run", "--driver", "devmapper", "--driver", "aufs", "--driver", "btrfs", "--scenario", "rootfs",
                 "--quick",
                 "--repeat", "3", "--warmup", "0", "--cache", "warm", "--out", out, "--scratch", scratch,
                 timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, scratch


def test_devmapper_aufs_and_btrfs_rootfs_floors_have_rows_and_statistics(union_run) -> None:
    out, scratch = union_run
    df = results.load([out])
    floor = df[df["system"] == results.FLOOR]
    steps = set(zip(floor["driver"], floor["step"], floor["backend"], strict=True))
    ficlone, fuse = rootfs_floors.KINDS["devmapper"].backend, rootfs_floors.KINDS["aufs"].backend
    assert steps == {("devmapper", "create_read_write", ficlone), ("devmapper", "remove", ficlone),
                     ("aufs", "get", fuse), ("aufs", "create_read_write+get", fuse), ("aufs", "put", fuse),
                     ("btrfs", "create_read_write", "btrfs snapshot ioctl")}  # fmt: skip
    assert floor["seconds"].gt(0).all() and (floor["repetition"] >= 0).all()
    summary = pd.read_csv(os.path.join(out, "summary.csv"))
    floors = summary[summary["system"] == results.FLOOR]
    assert (floors["n"] == 3).all() and floors[["median", "ci_low", "ci_high"]].notna().all().all()
    for driver, step in (("devmapper", "create_read_write"), ("aufs", "get"), ("btrfs", "create_read_write")):
        strata = summary[(summary["system"] == results.STRATA) & (summary["driver"] == driver)
                         & (summary["step"] == step)]  # fmt: skip
        assert len(strata) == 2 and strata["vs_floor"].gt(0).all()  # both depths joined to their floor
    assert mountutil.mounts_under(scratch) == [] and not os.path.exists(scratch)

"""The devmapper driver on the reflink thin pool: block sharing, device size as quota,
growth, a full pool, deferred deletion, status and options."""

from __future__ import annotations

import errno
import json
import os

import pytest

from graphdrivers import fsmagic, loopdev, mountutil
from graphdrivers.devmapper import dmthinpool, fsutil
from graphdrivers.errors import DriverNotSupported, DriverStateError, InvalidOption, LayerInUse, ThinPoolFull

from .dmutil import still_attached

MB = 1 << 20


def _write(path: str, size: int, byte: bytes = b"\xab", offset: int = 0) -> None:
    chunk = byte * MB
    with open(path, "r+b" if os.path.exists(path) else "wb") as f:
        f.seek(offset)
        for _ in range(size // MB):
            f.write(chunk)


def _pool_used(d) -> int:
    fsutil.syncfs(d.pool.dir)
    return d.pool.usage().data_used


def test_snapshots_share_blocks_until_written(make_driver):
    d = make_driver()
    d.create("img")
    rootfs = d.get("img")
    _write(os.path.join(rootfs, "data"), 100 * MB)
    d.put("img")

    before = _pool_used(d)
    for i in range(10):
        d.create(f"snap{i}", "img")
    shared = _pool_used(d) - before
    assert shared < 10 * MB, f"10 snapshots of a 100 MB layer took {shared / MB:.1f} MB of the pool"

    before = _pool_used(d)
    rootfs = d.get("snap3")
    _write(os.path.join(rootfs, "data"), 10 * MB, b"\xcd")
    d.put("snap3")
    rewritten = _pool_used(d) - before
    assert 9 * MB <= rewritten <= 16 * MB, f"rewriting 10 MB grew the pool by {rewritten / MB:.1f} MB"

    for layer, first in (("snap3", b"\xcd"), ("snap4", b"\xab"), ("img", b"\xab")):
        with open(os.path.join(d.get(layer), "data"), "rb") as f:
            assert f.read(4) == first * 4
            assert os.fstat(f.fileno()).st_size == 100 * MB
        d.put(layer)


@pytest.mark.parametrize("options", [{}, {"dm.fs": "ext4", "dm.basesize": "64M"}], ids=["xfs", "ext4"])
def test_snapshot_of_a_mounted_parent_sees_its_unflushed_writes(make_driver, options):
    d = make_driver(**options)
    d.create("parent")
    rootfs = d.get("parent")
    with open(os.path.join(rootfs, "fresh"), "w") as f:
        f.write("written while mounted")
    d.create("child", "parent")  # the parent stays mounted: frozen for the clone
    with open(os.path.join(rootfs, "after"), "w") as f:
        f.write("after the snapshot")
    child = d.get("child")
    assert open(os.path.join(child, "fresh")).read() == "written while mounted"
    assert not os.path.exists(os.path.join(child, "after"))
    d.put("child")
    d.put("parent")


def test_device_size_is_the_quota_and_can_grow(make_driver):
    d = make_driver(**{"dm.fs": "ext4", "dm.basesize": "64M"})
    d.create_read_write("small")
    rootfs = d.get("small")
    with pytest.raises(OSError) as err:
        _write(os.path.join(rootfs, "big"), 80 * MB)
    assert err.value.errno == errno.ENOSPC
    d.put("small")

    d.create_read_write("grown", storage_opt={"size": "160M"})
    rootfs = d.get("grown")
    st = os.statvfs(rootfs)
    assert 140 * MB < st.f_blocks * st.f_frsize <= 160 * MB
    _write(os.path.join(rootfs, "big"), 80 * MB)  # fits now
    assert os.path.getsize(os.path.join(rootfs, "big")) == 80 * MB
    d.put("grown")
    assert d.metadata("grown")["DeviceSize"] == str(160 * MB)


def test_a_device_never_shrinks(make_driver):
    d = make_driver(**{"dm.basesize": "512M"})
    d.create("parent", storage_opt={"size": "600M"})
    files = set(os.listdir(d.pool.dir))
    with pytest.raises(InvalidOption, match="cannot be smaller than"):
        d.create("child", "parent", storage_opt={"size": "512M"})
    assert not d.exists("child")
    assert set(os.listdir(d.pool.dir)) == files


def test_a_full_pool_refuses_creation_with_its_numbers(make_backing, make_driver):
    fs = make_backing("xfs", 512 * MB)
    root = os.path.join(fs.mountpoint, "root")
    os.mkdir(root)
    d = make_driver(root, **{"dm.fs": "ext4", "dm.basesize": "32M"})
    d.create("img")
    filler = os.path.join(root, "filler")
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, d.pool.usage().data_available - 20 * MB)
    finally:
        os.close(fd)
    devices, metadata = set(os.listdir(d.pool.dir)), set(os.listdir(d.devices.metadata_dir))
    with pytest.raises(ThinPoolFull, match=r"has [\d.]+ MB of [\d.]+ MB data free .*minimum 10%"):
        d.create("more", "img")
    assert not d.exists("more")
    assert set(os.listdir(d.pool.dir)) == devices
    assert set(os.listdir(d.devices.metadata_dir)) == metadata
    os.unlink(filler)
    d.create("more", "img")  # space came back: the same create works
    assert d.exists("more")


def test_deferred_deletion_of_a_busy_device(make_driver, xfs_root):
    d = make_driver(**{"dm.use_deferred_deletion": "false"})
    d.create("busy")
    holder = loopdev.attach(d.pool.path(d.devices.get("busy").device_id))  # someone else holds it
    try:
        with pytest.raises(LayerInUse, match="still attached"):
            d.remove("busy")
        assert d.exists("busy")
        d.cleanup()

        d = make_driver(**{"dm.use_deferred_deletion": "true"})
        device = d.pool.path(d.devices.get("busy").device_id)
        d.remove("busy")
        assert not d.exists("busy")
        assert os.path.exists(device)
        with open(os.path.join(d.devices.metadata_dir, "busy")) as f:
            assert json.load(f)["deleted"] is True
        assert ("Deferred Deleted Device Count", "1") in d.status()
    finally:
        holder.release()  # autoclear: the loop device goes
    d.create("other")  # any later operation retries the deferred deletion
    assert not os.path.exists(device)
    assert not os.path.exists(os.path.join(d.devices.metadata_dir, "busy"))


def test_status_rows_like_docker_info(make_driver):
    d = make_driver()
    rows = dict(d.status())
    for key in (
        "Pool Name",
        "Pool Blocksize",
        "Base Device Size",
        "Backing Filesystem",
        "Data file",
        "Metadata file",
        "Data Space Used",
        "Data Space Total",
        "Data Space Available",
        "Metadata Space Used",
        "Metadata Space Total",
        "Metadata Space Available",
        "Thin Pool Minimum Free Space",
        "Deferred Removal Enabled",
        "Deferred Deletion Enabled",
        "Library Version",
    ):
        assert rows[key], key
    assert rows["Backend"] == "reflink"
    assert rows["Base Device Size"] == "10.74 GB"
    assert rows["Backing Filesystem"] == "xfs"
    assert rows["Data file"] == d.pool.dir  # the root's own xfs shares extents: no image


def test_own_pool_image_when_the_root_cannot_reflink(make_backing, make_driver):
    fs = make_backing("ext4")
    root = os.path.join(fs.mountpoint, "root")
    os.mkdir(root)
    d = make_driver(root, **{"dm.loopdatasize": "4G"})
    image = os.path.join(root, "devmapper", "devmapper", "data")
    assert dict(d.status())["Data file"] == image
    assert fsmagic.fs_name(d.pool.dir) == "xfs"
    d.create("img")
    with open(os.path.join(d.get("img"), "f"), "w") as f:
        f.write("kept")
    d.put("img")
    d.cleanup()
    assert not mountutil.mounts_under(root)
    assert not still_attached([image])

    d = make_driver(root)
    assert open(os.path.join(d.get("img"), "f")).read() == "kept"
    d.put("img")


def test_base_uuid_mismatch_is_an_error(make_driver, xfs_root):
    other_root = os.path.join(os.path.dirname(xfs_root), "other")
    os.mkdir(other_root)
    d = make_driver()
    base_file = d.pool.path(d.devices.get(".base").device_id)
    d.cleanup()
    other = make_driver(other_root)
    other_base = other.pool.path(other.devices.get(".base").device_id)
    other.cleanup()
    os.unlink(base_file)
    os.link(other_base, base_file)  # a different pool's base device in our place
    with pytest.raises(DriverStateError, match="does not match the stored UUID"):
        make_driver()


def test_restart_checks_fs_and_grows_base(make_driver):
    d = make_driver(**{"dm.basesize": "400M"})
    d.cleanup()
    with pytest.raises(DriverStateError, match=r"filesystem is xfs but dm\.fs is ext4"):
        make_driver(**{"dm.fs": "ext4"})
    with pytest.raises(InvalidOption, match="can only grow"):
        make_driver(**{"dm.basesize": "350M"})
    d = make_driver(**{"dm.basesize": "600M"})
    d.create("img")
    st = os.statvfs(d.get("img"))
    assert st.f_blocks * st.f_frsize > 500 * MB  # 600M less the 64 MiB internal log
    d.put("img")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dm.nosuch": "1"}, "unknown option 'dm.nosuch'"),
        ({"dm.min_free_space": "120%"}, "percentage"),
        ({"dm.basesize": "lots"}, "not a size"),
        ({"dm.fs": "btrfs"}, "not one of xfs, ext4"),
        ({"dm.backend": "lvm"}, "not one of dmthin, reflink"),
        ({"dm.backend": "reflink", "dm.use_deferred_removal": "true"}, "dm.use_deferred_removal=true needs"),
    ],
)
def test_bad_options_are_refused(make_driver, xfs_root, options, message):
    with pytest.raises(InvalidOption, match=message):
        make_driver(**options)
    assert not os.path.exists(os.path.join(xfs_root, "devmapper"))


def test_dmthin_backend_runs_or_says_why_it_cannot(make_driver):
    """dm.backend=dmthin is honoured where device-mapper is, refused with the reason where not."""
    if dmthinpool.unavailable_reason() is None:
        d = make_driver(**{"dm.backend": "dmthin"})
        assert d.backend == "dmthin" and dict(d.status())["Backend"] == "dmthin"
        return
    with pytest.raises(DriverNotSupported, match="device-mapper"):
        make_driver(**{"dm.backend": "dmthin"})


def test_cleanup_leaves_no_mount_or_loop_device(make_driver, xfs_root):
    d = make_driver()
    for i in range(3):
        d.create(f"l{i}", f"l{i - 1}" if i else None)
        d.get(f"l{i}")
    files = [d.pool.path(d.devices.get(f"l{i}").device_id) for i in range(3)]
    d.cleanup()
    assert not mountutil.mounts_under(xfs_root)
    assert not still_attached(files)


def test_a_small_parentless_layer_gets_a_device_of_its_own_size(make_driver):
    d = make_driver()  # base: 10G of xfs
    d.create_read_write("small", storage_opt={"size": "64M"})
    assert d.metadata("small")["Filesystem"] == "ext4"  # xfs cannot be made under 300 MiB
    rootfs = d.get("small")
    with pytest.raises(OSError) as err:
        _write(os.path.join(rootfs, "big"), 80 * MB)
    assert err.value.errno == errno.ENOSPC
    d.put("small")
    d.create("child", "small")  # snapshots inherit the device's size and filesystem
    assert d.metadata("child")["Filesystem"] == "ext4"
    assert d.metadata("child")["DeviceSize"] == str(64 * MB)
    assert os.path.getsize(os.path.join(d.get("child"), "big")) > 32 * MB
    d.put("child")

    d.create("mid", storage_opt={"size": "400M"})
    assert d.metadata("mid")["Filesystem"] == "xfs"
    st = os.statvfs(d.get("mid"))
    assert 300 * MB < st.f_blocks * st.f_frsize <= 400 * MB
    d.put("mid")


def _mount_flags(point: str) -> set[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == point:
                return set(fields[5].split(",")) | set(line.split(" - ")[1].split()[2].split(","))
    raise AssertionError(f"{point} is not mounted")


def test_mount_options_split_into_flags_and_data(make_driver):
    d = make_driver(**{"dm.fs": "ext4", "dm.basesize": "64M", "dm.mountopt": "noatime,nodev,data=journal"})
    d.create("l")
    d.get("l")
    flags = _mount_flags(d.metadata("l")["MountPoint"])
    assert {"noatime", "nodev", "data=journal"} <= flags
    d.put("l")


def test_a_mount_option_the_kernel_refuses_is_an_invalid_option(make_driver):
    with pytest.raises(InvalidOption, match=r"dm\.mountopt 'bogus=1'"):
        make_driver(**{"dm.mountopt": "bogus=1"})
    d = make_driver()  # nothing half-made is left in the way
    d.create("l")
    assert d.exists("l")


def test_a_pool_that_fills_up_during_create_leaves_no_half_device(make_backing, make_driver):
    fs = make_backing("xfs", 512 * MB)
    root = os.path.join(fs.mountpoint, "root")
    os.mkdir(root)
    d = make_driver(root, **{"dm.fs": "ext4", "dm.basesize": "32M", "dm.min_free_space": "0%"})
    d.create("img")
    fd = os.open(os.path.join(root, "filler"), os.O_CREAT | os.O_WRONLY, 0o600)
    try:  # take every free block of the pool's filesystem
        for chunk in (MB, 4096):
            while True:
                try:
                    os.posix_fallocate(fd, os.fstat(fd).st_size, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    # A snapshot needs almost no space, but growing it makes resize2fs write through the
    # device into the full pool; sooner or later that fails.
    for i in range(6):
        devices, metadata = set(os.listdir(d.pool.dir)), set(os.listdir(d.devices.metadata_dir))
        try:
            d.create(f"grown{i}", "img", storage_opt={"size": "400M"})
        except ThinPoolFull as exc:
            assert "ran out of space" in str(exc) and "available" in str(exc)
            assert not d.exists(f"grown{i}")
            assert set(os.listdir(d.pool.dir)) == devices
            assert set(os.listdir(d.devices.metadata_dir)) == metadata
            assert not mountutil.mounts_under(d.devices.mnt_dir)
            break
    else:
        pytest.fail("six grown devices fit in a full pool")
    os.unlink(os.path.join(root, "filler"))
    fsutil.syncfs(root)  # xfs frees the filler's blocks in the background
    d.create("after", "img", storage_opt={"size": "400M"})  # with space back, it works
    assert d.exists("after")

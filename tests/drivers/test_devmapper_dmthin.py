"""The devmapper driver on the kernel's dm-thin (loop-lvm: a thin-pool table over two
loop-attached sparse files). These run only where the kernel has device-mapper with the
thin-pool target; elsewhere they skip with the reason (this project's machines have no
device-mapper, so the reflink backend is what runs there)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from graphdrivers import mountutil
from graphdrivers.devmapper import dmthinpool

REASON = dmthinpool.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"dm-thin unavailable: {REASON}")

MB = 1 << 20
OPTIONS = {
    "dm.backend": "dmthin",
    "dm.basesize": "512M",
    "dm.loopdatasize": "2G",
    "dm.loopmetadatasize": "64M",
}


def test_loop_lvm_pool_layers_and_sharing(make_driver, xfs_root):
    d = make_driver(**OPTIONS)
    rows = dict(d.status())
    assert rows["Backend"] == "dmthin"
    assert rows["Pool Blocksize"] == "65.54 kB"
    assert rows["Data file"].endswith("devmapper/devmapper/data")

    d.create("img")
    with open(os.path.join(d.get("img"), "data"), "wb") as f:
        f.write(b"\xab" * (50 * MB))
    d.put("img")
    before = d.pool.usage().data_used
    for i in range(5):
        d.create(f"snap{i}", "img")
    assert d.pool.usage().data_used - before < 5 * MB
    with open(os.path.join(d.get("snap2"), "data"), "rb") as f:
        assert f.read(2) == b"\xab\xab"
    d.put("snap2")
    d.remove("snap2")
    assert not d.exists("snap2")


def test_snapshot_of_an_active_origin_suspends_it(make_driver):
    d = make_driver(**OPTIONS)
    d.create("parent")
    with open(os.path.join(d.get("parent"), "fresh"), "w") as f:
        f.write("written while active")
    d.create("child", "parent")
    assert open(os.path.join(d.get("child"), "fresh")).read() == "written while active"
    d.put("child")
    d.put("parent")


def test_device_size_is_the_quota(make_driver):
    d = make_driver(**OPTIONS)
    d.create_read_write("limited")
    rootfs = d.get("limited")
    with pytest.raises(OSError) as err, open(os.path.join(rootfs, "big"), "wb") as f:
        for _ in range(600):
            f.write(b"q" * MB)
    assert err.value.errno == errno.ENOSPC
    d.put("limited")


def test_cleanup_removes_the_pool_and_its_loop_devices(make_driver, xfs_root):
    d = make_driver(**OPTIONS)
    d.create("img")
    d.get("img")
    pool = d.pool.name
    d.cleanup()
    assert not mountutil.mounts_under(xfs_root)
    assert subprocess.run(["dmsetup", "info", pool], capture_output=True).returncode != 0

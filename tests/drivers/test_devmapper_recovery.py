"""Crash consistency of the devmapper device set, with a real kill -9.

A child process runs the driver and stops at a chosen step of a create or delete (the
step is patched to announce itself and wait); the test then kills it with SIGKILL and
starts a new driver on the same root, which must complete or roll back the transaction
so that every device in the pool has metadata and every metadata file has a device.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import graphdrivers
from graphdrivers import mountutil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent(
    """
    import sys, time
    import graphdrivers
    from graphdrivers.devmapper import deviceset, reflinkpool

    root, op, layer, target, attr = sys.argv[1:6]
    owner = {"DeviceSet": deviceset.DeviceSet, "ReflinkPool": reflinkpool.ReflinkPool}[target]
    real = getattr(owner, attr)
    armed = [False]

    def stop_here(*args, **kwargs):
        if armed[0]:
            print("stopped", flush=True)
            time.sleep(60)
        return real(*args, **kwargs)

    setattr(owner, attr, stop_here)
    d = graphdrivers.get_driver("devmapper", root=root)
    armed[0] = True
    if op == "create":
        d.create(layer, "img")
    else:
        d.remove(layer)
    print("finished", flush=True)
    """
)


def _kill_at(root: str, op: str, layer: str, step: str) -> None:
    target, attr = step.split(".")
    env = {**os.environ, "PYTHONPATH": REPO}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, root, op, layer, target, attr], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "stopped"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def _assert_consistent(d) -> None:
    recorded = {
        name: json.load(open(os.path.join(d.devices.metadata_dir, name))) for name in os.listdir(d.devices.metadata_dir)
    }
    assert {m["device_id"] for m in recorded.values()} == d.pool.device_ids()
    txn = json.loads(open(os.path.join(d.home, "transaction-metadata")).read())
    assert txn["open_transaction_id"] == txn["transaction_id"]


@pytest.mark.parametrize(
    ("op", "step", "survives"),
    [
        ("create", "ReflinkPool.create_snap", False),  # killed before the device exists
        ("create", "DeviceSet._save_metadata", False),  # device made, not yet recorded
        ("create", "DeviceSet._close_txn", True),  # recorded, transaction still open
        ("remove", "ReflinkPool.delete", False),  # delete begun, device still there
        ("remove", "DeviceSet._close_txn", False),  # device and metadata gone, record open
    ],
)
def test_kill_mid_transaction_leaves_consistent_metadata(xfs_root, op, step, survives):
    d = graphdrivers.get_driver("devmapper", root=xfs_root)
    d.create("img")
    with open(os.path.join(d.get("img"), "inherited"), "w") as f:
        f.write("from img")
    d.put("img")
    if op == "remove":
        d.create("victim", "img")
    d.cleanup()

    _kill_at(xfs_root, op, "victim", step)

    d = graphdrivers.get_driver("devmapper", root=xfs_root)
    try:
        _assert_consistent(d)
        assert d.exists("victim") is survives
        if not survives:
            d.create("victim", "img")  # the id is free again
        assert open(os.path.join(d.get("victim"), "inherited")).read() == "from img"
        d.put("victim")
        _assert_consistent(d)
    finally:
        d.cleanup()


def test_kill_with_a_mounted_layer_then_restart(xfs_root):
    d = graphdrivers.get_driver("devmapper", root=xfs_root)
    d.create("img")
    d.cleanup()
    script = textwrap.dedent(
        """
        import sys, time
        import graphdrivers
        d = graphdrivers.get_driver("devmapper", root=sys.argv[1])
        with open(d.get("img") + "/during", "w") as f:
            f.write("written before the kill")
        print("mounted", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, xfs_root],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "mounted"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    mnt = os.path.join(xfs_root, "devmapper", "mnt", "img")
    assert mountutil.is_mountpoint(mnt)  # the dead process's mount outlives it

    d = graphdrivers.get_driver("devmapper", root=xfs_root)
    try:
        assert not mountutil.is_mountpoint(mnt)  # a new instance unmounts what it left
        assert open(os.path.join(d.get("img"), "during")).read() == "written before the kill"
        d.put("img")
        d.remove("img")
        _assert_consistent(d)
    finally:
        d.cleanup()

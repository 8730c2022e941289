"""Jobs in parallel threads leave consistent state; a second engine process is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading

import pytest

import engine as engine_pkg
from engine.engine import Engine
from tests.engine.conftest import Images, heavy_drivers, run


def _assert_consistent(engine: Engine) -> None:
    """Every image's layers are ready and in the driver; every layer is needed by an image."""
    used = set()
    for image in engine.graph.images():
        for layer in image.layers:
            assert engine.driver.exists(layer.chain_id)
            assert os.path.exists(engine.graph.tarsplit_path(layer.chain_id))
            used.add(layer.chain_id)
    assert {la.chain_id for la in engine.graph.layers()} == used
    assert engine.db.query("SELECT COUNT(*) FROM layers WHERE state != 'ready'")[0][0] == 0


def _in_threads(*targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn):
        def go():
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
        return go

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("driver_name", heavy_drivers())
def test_two_loads_sharing_layers(engine: Engine, images: Images) -> None:
    statuses: list[int] = []
    for _ in range(3):
        statuses.clear()
        errors = _in_threads(lambda: statuses.append(engine.job("load", images.multi_tar).run(check=True)),
                             lambda: statuses.append(engine.job("load", images.busybox_tar).run(check=True)))
        assert errors == [] and statuses == [0, 0]
        assert {i.id for i in engine.graph.images()} == {i.id for i in images.chain}
        assert len(engine.graph.layers()) == 4
        _assert_consistent(engine)
        assert run(engine, "rmi", "strata/multi", "busybox")[0] == 0
        assert engine.graph.layers() == []


@pytest.mark.parametrize("driver_name", heavy_drivers())
def test_load_racing_rmi(engine: Engine, images: Images) -> None:
    done = threading.Event()
    deleted: list[str] = []

    def loads() -> None:
        try:
            for n in range(500):  # at least 6 loads, and on until an rmi has hit one
                engine.job("load", images.multi_tar).run(check=True)
                if n >= 5 and deleted:
                    break
        finally:
            done.set()

    def removals() -> None:
        while not done.is_set():
            # either image may be absent at this moment; that is the race, not an error
            job = engine.job("rmi", "strata/multi", "busybox")
            job.run()
            deleted.extend(line for line in job.output().decode().splitlines() if line.startswith("Deleted"))

    assert _in_threads(loads, removals) == []
    assert deleted  # the removals did race the loads
    _assert_consistent(engine)
    assert run(engine, "load", images.multi_tar)[0] == 0
    _assert_consistent(engine)
    assert engine.graph.get_image("strata/multi").id == images.multi.id


def test_a_second_engine_process_is_refused(vfs_engine: Engine) -> None:
    repo = os.path.dirname(os.path.dirname(engine_pkg.__file__))
    result = subprocess.run([sys.executable, "-m", "engine.cli", "--root", vfs_engine.root, "--driver", "vfs",
                             "images"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": repo})
    assert result.returncode == 1
    assert result.stderr == f"strata: engine root {vfs_engine.root} is in use by another strata process " \
                            f"(pid {os.getpid()})\n"


def test_a_pinned_layer_outlives_its_image(vfs_engine: Engine, images: Images) -> None:
    """What a commit on top of an image relies on: its layers stay while the lease is held."""
    assert run(vfs_engine, "load", images.busybox_tar)[0] == 0
    image = vfs_engine.graph.get_image("busybox")
    with vfs_engine.graph.lease() as lease:
        vfs_engine.graph.pin(lease, image.layers)
        assert run(vfs_engine, "rmi", "busybox")[0] == 0
        assert vfs_engine.driver.exists(image.top_layer)
    assert not vfs_engine.driver.exists(image.top_layer)  # collected when the lease ended


@pytest.mark.parametrize("driver_name", heavy_drivers())
def test_a_failing_load_beside_a_good_one_sharing_its_base(engine: Engine, images: Images, tmp_path) -> None:
    bad = str(tmp_path / "bad.tar")
    with open(images.multi_tar, "rb") as f:
        data = bytearray(f.read())
    top = images.multi.diff_ids[-1].split(":")[1]
    with tarfile.open(images.multi_tar) as tf:  # damage the data of the last layer's marker file
        member = tf.getmember(f"blobs/sha256/{top}")
        with tarfile.open(fileobj=tf.extractfile(member)) as layer:
            inner = next(m for m in layer if m.isfile() and m.size > 0)
    data[member.offset_data + inner.offset_data] ^= 0xFF
    open(bad, "wb").write(data)
    results: list[int] = []
    for _ in range(3):
        results.clear()
        errors = _in_threads(lambda: results.append(engine.job("load", bad).run()),
                             lambda: results.append(engine.job("load", images.busybox_tar).run()))
        assert errors == [] and sorted(results) == [0, 1]
        assert [i.id for i in engine.graph.images()] == [images.busybox.id]
        _assert_consistent(engine)
        assert run(engine, "rmi", "busybox")[0] == 0
        assert engine.graph.layers() == []

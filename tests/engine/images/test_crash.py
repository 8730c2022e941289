"""Fault injection: `kill -9` of a real engine process in the middle of a load.

The next engine on the same root must find no half image and no orphan layer. The child
process is stopped at a precise point through the load job's public progress events.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import textwrap

import pytest

from engine.engine import Engine
from tests.engine.conftest import Images, assert_clean, chains, heavy_drivers, kill_9_when_ready, run

_CHILD = textwrap.dedent("""
    import os, sys, time
    from engine.engine import Engine
    root, driver, archive, when, first_bytes, last_diff = sys.argv[1:]
    engine = Engine(root, driver)
    job = engine.job("load", stdin=open(archive, "rb"))  # spooled to <root>/tmp first
    def on_progress(event):
        hit = (when == "mid-layer" and event.get("action") == "load" and event["current"] > int(first_bytes)) or (
            when == "layers-done" and event.get("action") == "layer" and event["diff_id"] == last_diff)
        if hit:
            print("READY", flush=True)
            time.sleep(600)
    job.progress = on_progress
    job.run()
    print("FINISHED", flush=True)
""")


@pytest.mark.parametrize("driver_name", heavy_drivers())
@pytest.mark.parametrize("when", ["mid-layer", "layers-done"])
def test_kill_9_during_load_leaves_no_trace(driver_name: str, driver_root: str, images: Images, when: str) -> None:
    archive = images.multi_tar
    layer_sizes = [os.path.getsize(f) for f in images.multi.layer_files]
    # progress counts busybox's layer twice (applied for busybox, found present for the first
    # untagged step); one byte more and the small-files layer is being applied
    first_bytes = 2 * layer_sizes[0] + 1
    child = kill_9_when_ready(_CHILD, driver_root, driver_name, archive, when, str(first_bytes),
                              images.multi.diff_ids[-1])
    assert child.returncode == -signal.SIGKILL
    # the dead process did leave work behind: journaled layers, in the driver too
    db = sqlite3.connect(os.path.join(driver_root, "image", driver_name, "graph.db"))
    states = sorted(state for (state,) in db.execute("SELECT state FROM layers"))
    db.close()
    assert states == (["creating", "ready"] if when == "mid-layer" else ["ready"] * 3)
    assert len(os.listdir(os.path.join(driver_root, "tmp"))) == 1  # the spooled archive

    with Engine(driver_root, driver_name) as after:  # the lock died with the process
        assert_clean(after, images.busybox, images.multi)
        assert os.listdir(os.path.join(driver_root, "tmp")) == []
        status, _, err = run(after, "load", archive)
        assert status == 0, err
        assert after.graph.get_image("strata/multi").id == images.multi.id
        assert len(after.graph.layers()) == 4


def test_repair_finishes_an_rmi_that_died_before_removing_layers(vfs_engine: Engine, images: Images) -> None:
    """rmi commits the image's deletion, then removes layers; a crash in between leaves
    ready layers no image needs, and a layer journaled as `removing`."""
    assert run(vfs_engine, "load", images.multi_tar)[0] == 0
    root = vfs_engine.root
    multi = vfs_engine.graph.get_image("strata/multi")
    with vfs_engine.db.transaction() as c:  # what the dead rmi had done (multi and its untagged steps)
        for image in images.chain[1:]:
            vfs_engine.db.remove_entity(image.id)
        c.execute("UPDATE layers SET state = 'removing' WHERE chain_id = ?", (multi.top_layer,))
    vfs_engine.close()
    with Engine(root, "vfs") as after:
        assert [i.id for i in after.graph.images()] == [images.busybox.id]
        assert [la.chain_id for la in after.graph.layers()] == [multi.layers[0].chain_id]
        assert [c for c in chains(images.multi) if after.driver.exists(c)] == [multi.layers[0].chain_id]

"""Fault injection: `kill -9` of a real engine process in the middle of `rm`.

The next engine on the root finds the container either whole (listed, with its layer,
removable) or gone (not listed, no layer, no directory): never listed without a layer.
"""

from __future__ import annotations

import os
import textwrap

import pytest

from engine.engine import Engine
from engine.errors import NoSuchContainer
from tests.engine.conftest import Images, kill_9_when_ready, run

_CHILD = textwrap.dedent("""
    import shutil, sys, time
    from engine.engine import Engine
    root, driver, ref, when = sys.argv[1:]
    engine = Engine(root, driver)
    def pause():
        print("READY", flush=True)
        time.sleep(600)
    remove_layer, rmtree = engine.driver.remove, shutil.rmtree
    def remove(layer_id):
        if when == "layer":
            pause()
        remove_layer(layer_id)
        if when == "after-layer":
            pause()
    def remove_dir(path, *args, **kwargs):
        if when == "directory" and path.endswith(ref):
            pause()
        return rmtree(path, *args, **kwargs)
    engine.driver.remove = remove
    shutil.rmtree = remove_dir
    engine.job("rm", ref).run()
    print("FINISHED", flush=True)
""")


@pytest.mark.parametrize("driver_name", ["vfs", "overlay2"])
@pytest.mark.parametrize("when", ["layer", "after-layer", "directory"])
def test_kill_9_during_rm_leaves_it_whole_or_gone(driver_name: str, driver_root: str, images: Images,
                                                  when: str) -> None:
    with Engine(driver_root, driver_name) as before:
        assert run(before, "load", images.busybox_tar)[0] == 0
        c = before.containers.create("busybox", ["true"])
        before.containers.start(c)
        before.containers.wait(c)
    kill_9_when_ready(_CHILD, driver_root, driver_name, c.id, when)

    with Engine(driver_root, driver_name) as after:
        listed = [x.id for x in after.containers.list(include_stopped=True)]
        if listed:  # whole: its layer is there and it can be removed
            assert listed == [c.id] and after.driver.exists(c.layer)
            assert run(after, "rm", c.id)[0] == 0
        with pytest.raises(NoSuchContainer):
            after.containers.get(c.id)
        assert not after.driver.exists(c.layer)
        assert os.listdir(os.path.join(driver_root, "containers")) == []
        assert after.containers.ids() == []

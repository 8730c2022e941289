"""Floors: the kernel or runtime primitive each step cannot beat, on the same data.

`--floors` (the default) measures, beside every driver, what its step costs when nothing
but the primitive runs, on the driver's own backing filesystem and the same layer tars
(unpacked untimed into plain directories where the primitive needs them). Rows have
system `floor` and the primitive in `backend`; the summary divides each median by its
floor's (`x floor`). What each floor is, and why it is the floor, is in the module of its
scenario:

- rootfs (`rootfs.py`): overlay mount(2) (overlay2), the btrfs snapshot ioctl, a
  copy_file_range copy (vfs), FICLONE of the image's device file (devmapper's reflink
  pool), a FUSE mount(2) + INIT handshake in process (aufs).
- layer-create `apply_diff` (`layercreate.py`): `tar -x` already started and waiting on its
  stdin (`untar.py`), fed the layer tar from memory.
- exec (`exec.py`): `runc run` / `crun run` of a prepared bundle (`true`, `run_rm_true`,
  `echo_first_byte`), and with peers `load` (archive read + `tar -x`).
- pull (`pull.py`): the blobs from the same registry over plain HTTP, gunzip, `tar -x`.
"""

from __future__ import annotations

import logging

from . import exec as exec_floors
from . import layercreate, pull, rootfs
from .untar import BACKEND as UNTAR

log = logging.getLogger(__name__)


def backend(scenario: str, driver: str) -> str:
    """What the floor rows of `scenario` on `driver` measured (their `backend` column;
    exec and pull rows name theirs step by step)."""
    if scenario == "rootfs":
        kind = rootfs.KINDS.get(driver)
        return kind.backend if kind else ""
    return {"layer-create": UNTAR, "pull": pull.BACKENDS["pull"]}.get(scenario, "")


FLOORS = {"rootfs": rootfs.rootfs, "layer-create": layercreate.layer_create, "exec": exec_floors.exec_,
          "pull": pull.pull}

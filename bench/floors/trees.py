"""Layer tars unpacked into plain directories, untimed: the data the floors work on."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tarfile

from ..workloads import Layer

log = logging.getLogger(__name__)


def unpack(layer: Layer, dest: str) -> None:
    """`tar -x` of a layer tar into `dest` (whiteouts stay as files: a floor, not a driver)."""
    os.makedirs(dest, exist_ok=True)
    subprocess.run(["tar", "-xf", layer.path, "-C", dest, "--numeric-owner"], check=True)


def merged(stack: list[Layer], dest: str) -> str:
    """The stack unpacked into `dest` (new, or empty: a btrfs subvolume), bottom first."""
    for layer in stack:
        unpack(layer, dest)
        with tarfile.open(layer.path) as tar:  # apply the layer's whiteouts, as a driver would
            for member in tar:
                head, _, name = member.name.strip("./").rpartition("/")
                if name.startswith(".wh.") and name != ".wh..wh..opq":
                    for path in (os.path.join(dest, head, name), os.path.join(dest, head, name[4:])):
                        with contextlib.suppress(FileNotFoundError):
                            (shutil.rmtree if os.path.isdir(path) and not os.path.islink(path) else os.remove)(path)
    return dest

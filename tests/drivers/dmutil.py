"""Helpers the devmapper tests share."""

from __future__ import annotations

import time

from graphdrivers import loopdev


def still_attached(files: list[str], timeout: float = 5.0) -> list[str]:
    """Loop devices still attached to `files` once `timeout` has passed.

    The kernel detaches an autoclear loop device when its filesystem's last mount goes;
    a container started elsewhere on the machine copies every mount into its own mount
    namespace and so holds ours for as long as it lives (milliseconds, usually). Waiting
    a little tells that apart from a real leak.
    """
    deadline = time.monotonic() + timeout
    while True:
        attached = [dev for f in files for dev in loopdev.devices_for(f)]
        if not attached or time.monotonic() > deadline:
            return attached
        time.sleep(0.01)

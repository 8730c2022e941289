"""Which cgroup layout the host has: it decides whether crun can run as it is.

crun 1.8 refuses a *hybrid* host (cgroup v1 controllers plus a cgroup2 hierarchy at
/sys/fs/cgroup/unified) as soon as that cgroup2 hierarchy has any controller enabled
("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"). crun decides
this by looking at /sys/fs/cgroup/unified, so a crun started in a private mount namespace
where that one mount is detached sees a plain v1 host and works; the container's cgroups
are then v1 only (the cgroup2 controllers -- on this host just hugetlb -- are not used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from graphdrivers import mountutil

CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"


@dataclass(frozen=True)
class CgroupLayout:
    mode: str  # "unified" (v2 only), "hybrid" (v1 + cgroup2 at .../unified), "legacy" (v1 only), "none"
    unified_controllers: tuple[str, ...] = ()

    @property
    def crun_needs_hidden_cgroup2(self) -> bool:
        return self.mode == "hybrid" and bool(self.unified_controllers)

    def describe(self) -> str:
        if self.mode == "hybrid":
            ctl = ", ".join(self.unified_controllers) or "no controllers"
            return f"hybrid (cgroup v1 + cgroup2 at {UNIFIED} with {ctl})"
        return {"unified": "cgroup v2", "legacy": "cgroup v1", "none": "no cgroup filesystem"}[self.mode]


def detect() -> CgroupLayout:
    types = {point: fstype for point, fstype, _ in mountutil.mount_table()}
    if types.get(CGROUP_ROOT) == "cgroup2":
        return CgroupLayout("unified")
    if types.get(UNIFIED) == "cgroup2":
        try:
            with open(os.path.join(UNIFIED, "cgroup.controllers")) as f:
                controllers = tuple(f.read().split())
        except OSError:
            controllers = ()
        return CgroupLayout("hybrid", controllers)
    if any(fstype == "cgroup" for fstype in types.values()):
        return CgroupLayout("legacy")
    return CgroupLayout("none")

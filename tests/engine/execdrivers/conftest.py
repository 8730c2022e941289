"""A plain busybox rootfs directory and an execdriver of every kind (native, oci on runc and crun)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from engine.execdrivers import ExecDriver, get_execdriver

VARIANTS = {
    "native": ("native", {}),
    "oci-runc": ("oci", {"exec.runtime": "runc"}),
    "oci-crun": ("oci", {"exec.runtime": "crun"}),
}


def make_busybox_rootfs(path: str) -> str:
    """busybox-static and its applet links, with an /etc/passwd and /etc/group that know `nobody`."""
    bin_dir = os.path.join(path, "bin")
    os.makedirs(bin_dir)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", os.path.join(bin_dir, "busybox"))
    applets = subprocess.run([os.path.join(bin_dir, "busybox"), "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(bin_dir, applet))
    os.makedirs(os.path.join(path, "etc"))
    with open(os.path.join(path, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
    with open(os.path.join(path, "etc/group"), "w") as f:
        f.write("root:x:0:\nstaff:x:50:nobody\nnogroup:x:65534:\n")
    for name in ("proc", "dev", "sys", "tmp", "root"):
        os.makedirs(os.path.join(path, name))
    return path


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs"))


@pytest.fixture(params=sorted(VARIANTS))
def execdriver(request: pytest.FixtureRequest, tmp_path) -> Iterator[ExecDriver]:
    name, options = VARIANTS[request.param]
    yield get_execdriver(name, str(tmp_path / "execroot"), options)

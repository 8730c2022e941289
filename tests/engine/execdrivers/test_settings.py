"""Settings reach the container alike in every execdriver (native, oci on runc and on crun)."""

from __future__ import annotations

import os

from engine.execdrivers import ExecDriver
from engine.execdrivers.settings import Mount, Resources, Settings, Ulimit
from tests.engine.execdrivers.test_execdrivers import start


def test_settings_are_applied(execdriver: ExecDriver, busybox_rootfs: str, tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("from host\n")
    settings = Settings(
        readonly_rootfs=True, cap_drop=("ALL",), cap_add=("CAP_KILL",), no_new_privileges=True,
        mounts=(Mount("/mnt", "bind", str(shared), ("rbind", "ro")), Mount("/scratch", "tmpfs", "tmpfs", ("size=1m",))),
        resources=Resources(memory=32 << 20, memory_swap=64 << 20, pids_limit=20),
        ulimits=(Ulimit("nofile", 256, 512),), sysctls=(("kernel.shmmni", "1234"),), domainname="example.net",
    )  # fmt: skip
    script = ("touch /x 2>/dev/null || echo ro-root; grep -E 'CapEff|NoNewPrivs' /proc/self/status; cat /mnt/f; "
              "echo s > /scratch/s && echo tmpfs; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
              "/sys/fs/cgroup/pids/pids.max /proc/sys/kernel/shmmni /proc/sys/kernel/domainname; ulimit -n")
    handle, out, err = start(execdriver, busybox_rootfs, tmp_path, ["sh", "-c", script], settings=settings)
    status = handle.wait(timeout=60)
    execdriver.release(handle.id, handle.state_dir)  # as the engine does: the container's cgroups go
    assert status is not None and status.code == 0, open(err).read()
    assert not any(os.path.exists(f"/sys/fs/cgroup/{c}/strata/{handle.id}") for c in ("memory", "pids", "devices"))
    assert open(out).read().split() == ["ro-root", "CapEff:", "0000000000000020", "NoNewPrivs:", "1", "from",
                                           "host", "tmpfs", str(32 << 20), "20", "1234", "example.net", "256"]

"""The one translation of a container's process spec and settings into an OCI runtime spec.

The oci driver writes this spec as the bundle's config.json for runc or crun; the native
driver applies the very same dict itself (`native._container_init`). So a setting either
reaches both execdrivers or neither: what a container gets does not depend on which one
runs it.
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Mapping
from typing import Any

from . import linux, users
from .base import ProcessSpec
from .settings import Device, Settings

MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
INIT_PATH = "/sbin/docker-init"
CPU_PERIOD = 100000  # microseconds: Docker's period for --cpus

# (path, major, minor): the nodes every container gets in /dev, as runc creates them.
DEFAULT_DEVICES = (("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
                   ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))  # fmt: skip
# Docker's default device cgroup rules beyond the nodes above: mknod of any, /dev/pts/*, ptmx.
DEFAULT_DEVICE_RULES = (("c", None, None, "m"), ("b", None, None, "m"), ("c", 136, None, "rwm"),
                        ("c", 5, 2, "rwm"))  # fmt: skip
RLIMITS = {name.removeprefix("RLIMIT_").lower(): name for name in dir(resource) if name.startswith("RLIMIT_")}


def default_rlimits() -> list[tuple[str, int, int]]:
    """(name, soft, hard): what a root without CAP_SYS_RESOURCE may set (hard never raised)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [("nofile", min(1024, hard), hard)]


def process_env(spec: ProcessSpec, user: users.User) -> dict[str, str]:
    env = spec.env_dict()
    env.setdefault("HOME", user.home)
    if spec.hostname:
        env.setdefault("HOSTNAME", spec.hostname)
    return env


def _rule(kind: str | None, major: int | None, minor: int | None, access: str, allow: bool = True) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow, "access": access}
    if kind is not None:
        rule["type"] = kind
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


def host_devices() -> list[Device]:
    """Every device node of the host's /dev (a privileged container's), as Docker lists them."""
    found = []
    for top, dirs, files in os.walk("/dev"):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd")]
        for name in files:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                if path in ("/dev/console", "/dev/ptmx"):
                    continue
                kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
                found.append(Device(path, kind, os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode)))
    return found


def _resources(s: Settings, devices: list[Device]) -> dict[str, Any]:
    if s.privileged:
        rules = [_rule(None, None, None, "rwm")]
    else:
        rules = [_rule(None, None, None, "rwm", allow=False)]
        rules += [_rule(k, ma, mi, a) for k, ma, mi, a in DEFAULT_DEVICE_RULES]
        rules += [_rule("c", ma, mi, "rwm") for _, ma, mi in DEFAULT_DEVICES]
        rules += [_rule(d.type, d.major, d.minor, d.permissions) for d in devices]
    out: dict[str, Any] = {"devices": rules}
    r = s.resources
    memory: dict[str, Any] = {}
    if r.memory:
        memory["limit"] = r.memory
    if r.memory_swap:
        memory["swap"] = r.memory_swap
    if r.memory_reservation:
        memory["reservation"] = r.memory_reservation
    if r.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if r.cpu_quota or r.cpu_period:  # a period alone keeps the quota unlimited (-1), as the kernel's default
        cpu["quota"], cpu["period"] = r.cpu_quota or -1, r.cpu_period or CPU_PERIOD
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit:
        out["pids"] = {"limit": r.pids_limit}
    return out


def _mounts(spec: ProcessSpec, s: Settings) -> list[dict[str, Any]]:
    nosuid_noexec_nodev = ["nosuid", "noexec", "nodev"]
    sys_options = [*nosuid_noexec_nodev, "rw" if s.privileged else "ro"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": nosuid_noexec_nodev},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755",
                                                                                 "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*nosuid_noexec_nodev, "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nosuid_noexec_nodev},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*nosuid_noexec_nodev, "relatime", "rw" if s.privileged else "ro"]},
    ]
    if s.init:
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": s.init, "options": ["rbind", "ro"]})
    for m in s.mounts:
        mounts.append({"destination": m.destination, "type": m.type, "source": m.source, "options": list(m.options)})
    return mounts


def oci_spec(spec: ProcessSpec, user: users.User, env: Mapping[str, str]) -> dict[str, Any]:
    """The OCI runtime-spec config.json for `spec` (Docker's defaults plus its settings)."""
    s = spec.settings
    held = linux.held_capabilities()
    caps = [c for c in s.capabilities(linux.DEFAULT_CAPABILITIES) if c in held]  # "all" is all the engine has
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if spec.network == "none":
        namespaces.append({"type": "network"})  # a new one: the runtime brings up only lo
    elif spec.network == "netns":
        namespaces.append({"type": "network", "path": spec.netns_path})  # the engine's, with the veths
    gids = [*user.additional_gids, *users.group_ids(spec.rootfs, s.group_add)]
    process_user: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if gids:
        process_user["additionalGids"] = sorted(set(gids))
    rlimits = {name: (soft, hard) for name, soft, hard in default_rlimits()}
    rlimits.update({u.name: (u.soft, u.hard) for u in s.ulimits})
    devices = host_devices() if s.privileged else list(s.devices)
    args = [INIT_PATH, "--", *spec.args] if s.init else list(spec.args)
    linux_section: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": _resources(s, devices),
        "maskedPaths": [] if s.privileged else list(MASKED_PATHS if s.masked_paths is None else s.masked_paths),
        "readonlyPaths": [] if s.privileged else list(READONLY_PATHS if s.readonly_paths is None
                                                      else s.readonly_paths),
    }
    if devices:
        linux_section["devices"] = [{"path": d.path, "type": d.type, "major": d.major, "minor": d.minor,
                                     "fileMode": d.mode, "uid": 0, "gid": 0} for d in devices]
    sysctls = dict(s.sysctls)
    if s.domainname:
        sysctls["kernel.domainname"] = s.domainname  # as Docker sets it: runc 1.1 has no `domainname` field
    if sysctls:
        linux_section["sysctl"] = sysctls
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.tty,
            **({"consoleSize": {"height": spec.console_size[0], "width": spec.console_size[1]}}
               if spec.tty and spec.console_size else {}),
            "user": process_user,
            "args": args,
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": spec.cwd,
            # a non-root user starts with no effective capabilities (as setuid leaves it); bounded by `caps`
            "capabilities": {"bounding": caps, "effective": caps if user.uid == 0 else [],
                             "permitted": caps if user.uid == 0 else []},
            "rlimits": [{"type": RLIMITS[name], "soft": soft, "hard": hard} for name, (soft, hard) in rlimits.items()],
            "noNewPrivileges": s.no_new_privileges,
        },
        "root": {"path": os.path.abspath(spec.rootfs), "readonly": s.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": _mounts(spec, s),
        "linux": linux_section,
    }
    return config

"""A container's settings beyond its command: mounts, limits, privileges, identity.

Both execdrivers take these in `ProcessSpec.settings` and turn them into one OCI runtime
spec (`execdrivers.ocispec`): the oci driver hands that spec to runc or crun, the native
driver applies the same spec itself. The values here are already checked (the container
store parses what users give, `engine.containers.hostconfig`); they are JSON-able so a
container's record keeps them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Every capability of Linux 6.x, by number (what `CapEff` bits mean).
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
CAPABILITY_NUMBERS = {name: number for number, name in enumerate(CAPABILITIES)}


@dataclass(frozen=True)
class Mount:
    """One OCI mount: `source` is a host path for binds, the fs name otherwise."""

    destination: str
    type: str  # "bind" or a filesystem type (tmpfs)
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Device:
    """A host device node made in the container's /dev (`--device HOST[:CONTAINER[:PERMS]]`)."""

    path: str  # in the container
    type: str  # "c" or "b"
    major: int
    minor: int
    mode: int
    permissions: str = "rwm"


@dataclass(frozen=True)
class Ulimit:
    name: str  # Docker's name: nofile, nproc, core...
    soft: int
    hard: int


@dataclass(frozen=True)
class Resources:
    """cgroup limits; 0 (or None) means unlimited / the default."""

    memory: int = 0  # bytes
    memory_swap: int = 0  # memory + swap, bytes; -1 unlimited swap
    memory_reservation: int = 0  # the soft limit the kernel reclaims down to under pressure, bytes
    cpu_quota: int = 0  # microseconds per cpu_period
    cpu_period: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    pids_limit: int = 0
    oom_kill_disable: bool = False

    def any(self) -> bool:
        return self != Resources()


@dataclass(frozen=True)
class Settings:
    domainname: str = ""
    readonly_rootfs: bool = False
    mounts: tuple[Mount, ...] = ()
    cap_add: tuple[str, ...] = ()  # CAP_ names, or "ALL"
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    devices: tuple[Device, ...] = ()
    resources: Resources = field(default_factory=Resources)
    ulimits: tuple[Ulimit, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    no_new_privileges: bool = False
    group_add: tuple[str, ...] = ()  # group names or ids, resolved in the container's /etc/group
    init: str = ""  # host path of the init binary bound at /sbin/docker-init ("" = none)
    masked_paths: tuple[str, ...] | None = None  # None: the defaults
    readonly_paths: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Settings:
        raw = dict(raw or {})
        nested = {"mounts": Mount, "devices": Device, "ulimits": Ulimit}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            if f.name in nested:
                value = tuple(nested[f.name](**{**v, **({"options": tuple(v["options"])} if "options" in v else {})})
                              for v in value)
            elif f.name == "resources":
                value = Resources(**value)
            elif f.name == "sysctls":
                value = tuple((k, v) for k, v in value)
            elif isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
        return cls(**values)

    def capabilities(self, default: tuple[str, ...]) -> list[str]:
        """The capability set after privileged, --cap-add and --cap-drop (Docker's order)."""
        if self.privileged:
            return list(CAPABILITIES)
        caps = list(default)
        if "ALL" in self.cap_add:
            caps = list(CAPABILITIES)
        caps += [c for c in self.cap_add if c != "ALL" and c not in caps]
        if "ALL" in self.cap_drop:
            caps = [c for c in self.cap_add if c != "ALL"] if "ALL" not in self.cap_add else list(CAPABILITIES)
        return [c for c in caps if c not in self.cap_drop]

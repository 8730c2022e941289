"""The create/run options (args.py) read into what a container gets: honoured or refused.

Each option becomes an execdriver setting (`execdrivers.settings.Settings`, applied alike
by both execdrivers) or a container fact (labels, stop signal and timeout, the /etc/hosts
and /etc/resolv.conf it is given). A value strata cannot honour is a RefusedOption naming
the flag and the API field; values Docker answers with a warning get Docker's warning.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import stat
from dataclasses import dataclass, field
from typing import Any

from ..errors import RefusedOption
from ..execdrivers import linux, ocispec
from ..execdrivers.settings import CAPABILITIES, Device, Mount, Resources, Settings, Ulimit
from . import args as containerargs

log = logging.getLogger(__name__)

MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum --memory
INIT_BINARIES = ("docker-init", "tini-static")
# Namespaced sysctls (Docker's validation): per IPC namespace, or per network namespace.
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
               "kernel.shmmni", "kernel.shm_rmid_forced")  # fmt: skip
TMPFS_OPTIONS = ("size", "mode", "nr_inodes", "nr_blocks", "uid", "gid", "ro", "rw", "exec", "noexec", "suid",
                 "nosuid", "dev", "nodev", "atime", "noatime", "relatime", "strictatime")  # fmt: skip
BIND_MODES = ("ro", "rw", "rprivate", "private")
WARN_NO_OOM_LIMIT = ("OOM killer is disabled for the container, but no memory limit is set, this can result in "
                     "the system running out of resources.")  # fmt: skip
WARN_NO_SWAP = ("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory "
                "limited without swap.")  # fmt: skip


@dataclass
class HostConfig:
    """What the options ask for: the execdriver settings and the container's own facts."""

    settings: Settings
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    stop_timeout: int | None = None
    extra_hosts: list[tuple[str, str]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    volumes: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, destination, read-only)
    warnings: list[str] = field(default_factory=list)


def what(dest: str) -> str:
    """How an option is named in errors: its flag and, when it has one, its API field."""
    flags = next((f for f, d, *_ in containerargs.OPTIONS if d == dest), ("--" + dest.replace("_", "-"),))
    api = containerargs.API_FIELDS.get(dest)
    return f"{flags[-1]}" + (f" ({api[0].split('.')[1]})" if api else "")


def parse(o: dict[str, Any], network: str) -> HostConfig:
    """The HostConfig of a create job's options (`network` is already checked)."""
    hc = HostConfig(Settings())
    mounts = _mounts(o, hc)
    resources, hc.warnings = _resources(o)
    no_new_privileges, masked = _security_opts(o["security_opt"])
    hc.settings = Settings(
        domainname=o["domainname"],
        readonly_rootfs=o["read_only"],
        mounts=tuple(mounts),
        cap_add=_capabilities(o["cap_add"], "cap_add"),
        cap_drop=_capabilities(o["cap_drop"], "cap_drop"),
        privileged=o["privileged"],
        devices=tuple(_device(d) for d in o["device"]),
        resources=resources,
        ulimits=tuple(_ulimit(u) for u in o["ulimit"]),
        sysctls=tuple(_sysctl(s, network) for s in o["sysctl"]),
        no_new_privileges=no_new_privileges,
        group_add=tuple(_group(g) for g in o["group_add"]),
        init=_init_binary() if o["init"] else "",
        masked_paths=() if masked else None,
        readonly_paths=() if masked else None,
    )
    hc.labels = dict(_key_value(item, "label") for item in o["label"])
    if o["stop_signal"]:
        hc.stop_signal = signal_name(o["stop_signal"], what("stop_signal"))
    if o["stop_timeout"] != "":
        hc.stop_timeout = integer(o["stop_timeout"], "stop_timeout")
    hc.extra_hosts = [_extra_host(h) for h in o["add_host"]]
    hc.dns = [_ip(d, "dns") for d in o["dns"]]
    hc.dns_search = list(o["dns_search"])
    hc.dns_options = list(o["dns_option"])
    for warning in hc.warnings:
        log.warning("create: %s", warning)
    return hc


def signal_number(text: str, what_: str) -> int:
    """A signal as Docker's ParseSignal takes it (`TERM`, `SIGTERM`, `15`, `40`), checked: the
    one parser of --stop-signal, an image's STOPSIGNAL and `kill -s`."""
    name = text.strip().upper()
    if name.isdigit():
        if not 0 < int(name) <= signal.SIGRTMAX:
            raise RefusedOption(f"invalid {what_}: {text!r} is not a signal")
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in signal.Signals.__members__:
        raise RefusedOption(f"invalid {what_}: {text!r} is not a signal")
    return int(signal.Signals[name])


def signal_name(text: str, what_: str) -> str:
    """A signal checked by `signal_number`, as it is recorded: `SIGNAME`, or the number of one without a name."""
    number = signal_number(text, what_)
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def integer(text: str, dest: str) -> int:
    """An integer option, or a RefusedOption naming it."""
    try:
        return int(text)
    except ValueError:
        raise RefusedOption(f"invalid {what(dest)}: {text!r} is not an integer") from None


def _key_value(item: str, dest: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    if not key:
        raise RefusedOption(f"invalid {what(dest)}: {item!r} (KEY=VALUE)")
    return key, value


def _capabilities(names: list[str], dest: str) -> tuple[str, ...]:
    out = []
    for name in names:
        cap = name.upper()
        cap = cap if cap == "ALL" or cap.startswith("CAP_") else "CAP_" + cap
        if cap != "ALL" and cap not in CAPABILITIES:
            raise RefusedOption(f"invalid {what(dest)}: unknown capability {name!r}")
        if dest == "cap_add" and cap != "ALL" and cap not in linux.held_capabilities():
            raise RefusedOption(f"invalid {what(dest)}: {cap} is not held by the engine, so no container can "
                                "have it")
        out.append(cap)
    return tuple(out)


def _mounts(o: dict[str, Any], hc: HostConfig) -> list[Mount]:
    """-v, --mount and --tmpfs as OCI mounts; named volumes are bound at the store's paths later."""
    mounts: list[Mount] = []
    for item in o["volume"]:
        parts = item.split(":")
        if len(parts) == 1:
            raise RefusedOption(f"invalid {what('volume')}: anonymous volumes ({item!r}) are not supported by strata; "
                             "name one: -v NAME:/path")
        if len(parts) > 3:
            raise RefusedOption(f"invalid {what('volume')}: {item!r} (SOURCE:DESTINATION[:MODE])")
        source, dest, modes = parts[0], parts[1], [m for m in (parts[2].split(",") if len(parts) == 3 else []) if m]
        bad = [m for m in modes if m not in BIND_MODES]
        if bad:
            raise RefusedOption(f"invalid {what('volume')}: mode {bad[0]!r} is not supported (ro, rw)")
        read_only = "ro" in modes
        _check_destination(dest, "volume")
        if os.path.isabs(source):
            os.makedirs(source, exist_ok=True)  # as docker's -v does for a missing host path
            mounts.append(_bind(source, dest, read_only))
        else:
            hc.volumes.append((source, dest, read_only))
    for item in o["mount"]:
        mounts.extend(_mount_option(item, hc))
    for item in o["tmpfs"]:
        dest, _, options = item.partition(":")
        _check_destination(dest, "tmpfs")
        mounts.append(_tmpfs(dest, [x for x in options.split(",") if x], "tmpfs"))
    targets = [m.destination for m in mounts] + [v[1] for v in hc.volumes]
    duplicate = next((t for t in targets if targets.count(t) > 1), None)
    if duplicate:
        raise RefusedOption(f"duplicate mount point: {duplicate}")
    return mounts


def _mount_option(item: str, hc: HostConfig) -> list[Mount]:
    try:
        m = containerargs.mount_to_api(item)  # one reading of --mount, shared with the daemon client
    except containerargs.UsageError as exc:
        raise RefusedOption(str(exc)) from None
    kind, source, dest, read_only = m["Type"], m.get("Source", ""), m.get("Target", ""), m.get("ReadOnly", False)
    _check_destination(dest, "mount")
    if kind == "bind":
        if not os.path.exists(source):
            raise RefusedOption(f"invalid {what('mount')}: bind source path does not exist: {source}")
        return [_bind(source, dest, read_only)]
    if kind == "volume":
        if not source:
            raise RefusedOption(f"invalid {what('mount')}: anonymous volumes are not supported by strata; name one")
        hc.volumes.append((source, dest, read_only))
        return []
    if kind == "tmpfs":
        tmpfs = m.get("TmpfsOptions", {})
        options = [f"size={tmpfs['SizeBytes']}"] if "SizeBytes" in tmpfs else []
        options += [f"mode={tmpfs['Mode']:o}"] if "Mode" in tmpfs else []
        return [_tmpfs(dest, options + (["ro"] if read_only else []), "mount")]
    raise RefusedOption(f"invalid {what('mount')}: type {kind!r} is not supported (bind, volume, tmpfs)")


def _check_destination(dest: str, dest_option: str) -> None:
    if not dest.startswith("/") or dest == "/":
        raise RefusedOption(f"invalid {what(dest_option)}: the mount destination must be an absolute path other than "
                         f"/, got {dest!r}")


def _bind(source: str, dest: str, read_only: bool) -> Mount:
    return Mount(dest, "bind", os.path.abspath(source), ("rbind", "rprivate", *(("ro",) if read_only else ())))


def _tmpfs(dest: str, options: list[str], dest_option: str) -> Mount:
    for option in options:
        if option.partition("=")[0] not in TMPFS_OPTIONS:
            raise RefusedOption(f"invalid {what(dest_option)}: tmpfs option {option!r} is not supported")
    return Mount(dest, "tmpfs", "tmpfs", ("nosuid", "nodev", "noexec", *options))


def _device(item: str) -> Device:
    parts = item.split(":")
    host = parts[0]
    inside = parts[1] if len(parts) > 1 and parts[1] else host
    perms = parts[2] if len(parts) > 2 else "rwm"
    if len(parts) > 3 or not perms or set(perms) - set("rwm"):
        raise RefusedOption(f"invalid {what('device')}: {item!r} (HOST[:CONTAINER[:rwm]])")
    try:
        st = os.stat(host)
    except OSError as exc:
        raise RefusedOption(f"invalid {what('device')}: {host}: {exc.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise RefusedOption(f"invalid {what('device')}: {host} is not a device node")
    if not inside.startswith("/dev/"):
        raise RefusedOption(f"invalid {what('device')}: the container path must be under /dev, got {inside!r}")
    return Device(inside, "c" if stat.S_ISCHR(st.st_mode) else "b", os.major(st.st_rdev), os.minor(st.st_rdev),
                  stat.S_IMODE(st.st_mode), perms)


def _online_cpus() -> set[int]:
    return os.sched_getaffinity(0)


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise RefusedOption(f"invalid {what('cpuset_cpus')}: {text!r} (like 0-1 or 0,2)")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _resources(o: dict[str, Any]) -> tuple[Resources, list[str]]:
    warnings: list[str] = []
    memory = containerargs_size(o["memory"], "memory")
    swap = containerargs_size(o["memory_swap"], "memory_swap")
    if memory and memory < MIN_MEMORY:
        raise RefusedOption(f"invalid {what('memory')}: minimum memory limit allowed is 6MB")
    if swap and not memory:
        raise RefusedOption(f"invalid {what('memory_swap')}: you should always set the Memory limit when using "
                         "Memoryswap limit, see usage")
    if swap > 0 and swap < memory:
        raise RefusedOption(f"invalid {what('memory_swap')}: minimum memoryswap limit should be larger than memory "
                         "limit, see usage")
    reservation = containerargs_size(o["memory_reservation"], "memory_reservation")
    check_reservation(memory, reservation, what("memory_reservation"))
    if memory and not swap:
        swap = 2 * memory  # Docker: as much swap as memory
    if swap and not _swap_limit_supported():
        warnings.append(WARN_NO_SWAP)
        swap = 0
    quota, period = cpu_quota(o["cpus"]) if o["cpus"] else (0, 0)
    if o["cpu_period"] or o["cpu_quota"]:
        if o["cpus"]:
            raise RefusedOption(f"conflicting options: {what('cpus')} and {what('cpu_period')}/{what('cpu_quota')} "
                                "cannot both be set")
        period = integer(o["cpu_period"], "cpu_period") if o["cpu_period"] else 0
        quota = integer(o["cpu_quota"], "cpu_quota") if o["cpu_quota"] else 0
        if period and not 1000 <= period <= 1_000_000:
            raise RefusedOption(f"invalid {what('cpu_period')}: CPU cfs period can not be less than 1ms (i.e. 1000) "
                                "or larger than 1s (i.e. 1000000)")
        if quota and quota < 1000 and quota != -1:
            raise RefusedOption(f"invalid {what('cpu_quota')}: CPU cfs quota can not be less than 1ms (i.e. 1000)")
    shares = integer(o["cpu_shares"], "cpu_shares") if o["cpu_shares"] else 0
    if shares < 0:
        raise RefusedOption(f"invalid {what('cpu_shares')}: must not be negative")
    if o["cpuset_cpus"]:
        check_cpuset(o["cpuset_cpus"])
    pids = integer(o["pids_limit"], "pids_limit") if o["pids_limit"] else 0
    if o["oom_kill_disable"] and not memory:
        warnings.append(WARN_NO_OOM_LIMIT)
    resources = Resources(memory=memory, memory_swap=swap, memory_reservation=reservation, cpu_quota=quota,
                          cpu_period=period, cpu_shares=shares,
                          cpuset_cpus=o["cpuset_cpus"], pids_limit=pids if pids > 0 else 0,
                          oom_kill_disable=o["oom_kill_disable"])
    return resources, warnings


def cpu_quota(text: str) -> tuple[int, int]:
    """--cpus (NanoCpus) as the CFS (quota, period) that enforce it, checked against the host's CPUs."""
    nano = nano_cpus(text)
    ncpu = os.cpu_count() or 1
    if not 10_000_000 <= nano <= ncpu * 1_000_000_000:
        raise RefusedOption(f"invalid {what('cpus')}: range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                            f"{ncpu} CPUs available")
    return nano * ocispec.CPU_PERIOD // 1_000_000_000, ocispec.CPU_PERIOD


def check_cpuset(text: str) -> None:
    """--cpuset-cpus: a CPU list (0-1, 0,2) of online CPUs."""
    wanted, online = _cpu_list(text), _online_cpus()
    if not wanted <= online:
        raise RefusedOption(f"invalid {what('cpuset_cpus')}: requested CPUs are not available - requested "
                            f"{text}, available: {','.join(map(str, sorted(online)))}")


def check_reservation(memory: int, reservation: int, shown: str) -> None:
    """Docker's rules for a memory reservation (create and update alike): at least the
    minimum, and not above the memory limit when one is set."""
    if reservation < 0:
        raise RefusedOption(f"invalid {shown}: must not be negative")
    if reservation and reservation < MIN_MEMORY:
        raise RefusedOption(f"invalid {shown}: Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation and memory < reservation:
        raise RefusedOption(f"invalid {shown}: Minimum memory limit can not be less than memory reservation limit, "
                            "see usage")


def containerargs_size(text: str, dest: str) -> int:
    if not text:
        return 0
    try:
        return containerargs.parse_size(text, what(dest))
    except containerargs.UsageError as exc:
        raise RefusedOption(str(exc)) from None


def nano_cpus(text: str) -> int:
    """--cpus as the API's NanoCpus."""
    try:
        return containerargs.parse_nano(text, what("cpus"))
    except containerargs.UsageError as exc:
        raise RefusedOption(str(exc)) from None


def _swap_limit_supported() -> bool:
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or os.path.exists(
        "/sys/fs/cgroup/cgroup.controllers")


def _ulimit(item: str) -> Ulimit:
    name, _, limits = item.partition("=")
    soft_text, _, hard_text = limits.partition(":")
    if name not in ocispec.RLIMITS:
        raise RefusedOption(f"invalid {what('ulimit')}: unknown limit {name!r} "
                         f"(known: {', '.join(sorted(ocispec.RLIMITS))})")
    soft, hard = integer(soft_text, "ulimit"), integer(hard_text or soft_text, "ulimit")
    if soft > hard:
        raise RefusedOption(f"invalid {what('ulimit')}: {item!r}: the soft limit is greater than the hard one")
    return Ulimit(name, soft, hard)


def _sysctl(item: str, network: str) -> tuple[str, str]:
    key, value = _key_value(item, "sysctl")
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return key, value
    if key.startswith("net."):
        if network == "host":
            raise RefusedOption(f"invalid {what('sysctl')}: {key} is not allowed with the host's network namespace")
        return key, value
    raise RefusedOption(f"invalid {what('sysctl')}: {key} is not a namespaced sysctl (strata allows "
                     "kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* and net.*)")


def _security_opts(items: list[str]) -> tuple[bool, bool]:
    """(no-new-privileges, systempaths unconfined); what strata already is is accepted."""
    no_new_privileges = unmasked = False
    for item in items:
        key, _, value = item.replace("=", ":", 1).partition(":")
        if key == "no-new-privileges" and value in ("", "true", "false"):
            no_new_privileges = value != "false"
        elif key == "systempaths" and value == "unconfined":
            unmasked = True
        elif key in ("seccomp", "apparmor") and value == "unconfined":
            pass  # strata loads no seccomp filter and no AppArmor profile: this is what it does
        elif key == "label" and value == "disable":
            pass  # no SELinux labels are applied on this host
        else:
            raise RefusedOption(f"invalid {what('security_opt')}: {item!r} is not supported by strata "
                             "(no-new-privileges, systempaths=unconfined, seccomp=unconfined)")
    return no_new_privileges, unmasked


def _group(name: str) -> str:
    if not name or ":" in name:
        raise RefusedOption(f"invalid {what('group_add')}: {name!r}")
    return name


def _init_binary() -> str:
    for name in INIT_BINARIES:
        path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/libexec/docker")
        if path:
            return path
    raise RefusedOption(f"{what('init')}: no init binary on this host ({' or '.join(INIT_BINARIES)}; "
                     "install Debian's tini)")


def _ip(text: str, dest: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RefusedOption(f"invalid {what(dest)}: {text!r} is not an IP address") from None


def _extra_host(item: str) -> tuple[str, str]:
    sep = "=" if "=" in item else ":"
    host, _, address = item.partition(sep)
    if not host or not address:
        raise RefusedOption(f"invalid {what('add_host')}: {item!r} (HOST:IP)")
    if address == "host-gateway":
        raise RefusedOption(f"invalid {what('add_host')}: host-gateway is not supported by strata (name the "
                            "gateway's address)")
    return host, _ip(address.strip("[]"), "add_host")

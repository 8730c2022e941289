"""The options of `create` and `run`, declared once for the jobs, the CLI and the daemon client.

The client (`strata -H HOST run`) must start in a few milliseconds, and importing argparse
(with dataclasses or typing) costs several, so the options are a plain table: the `create`
and `run` jobs declare their options from it (and the CLI its flags from those), and
`parse_run` reads it for the client, with the same meaning (a test checks it).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

# (flags, destination, kind, default, help): kind is "flag", "value" or "append".
OPTIONS: tuple[tuple[tuple[str, ...], str, str, object, str], ...] = (
    (("-d", "--detach"), "detach", "flag", False, "print the id and leave it running (run only)"),
    (("--rm",), "rm", "flag", False, "remove the container when it exits"),
    (("-e", "--env"), "env", "append", None, "KEY=VALUE for the container's environment"),
    (("-w", "--workdir"), "workdir", "value", "", "working directory inside the container"),
    (("-u", "--user"), "user", "value", "", "USER[:GROUP] to run as"),
    (("--entrypoint",), "entrypoint", "append", None, "replace the image's ENTRYPOINT ('' for none; repeat the "
     "flag for more words)"),
    (("--name",), "name", "value", "", "the container's name"),
    (("--hostname",), "hostname", "value", "", "the container's hostname"),
    (("--domainname",), "domainname", "value", "", "the container's NIS domain name"),
    (("--net", "--network"), "network", "value", "default",
     "none (loopback only), host, bridge or a network's name; default: none standalone, bridge in the daemon"),
    (("--platform",), "platform", "value", "", "OS/ARCH[/VARIANT] the image must be for (pulled for it if missing)"),
    (("--pull",), "pull", "value", "missing",
     "pull the image first: missing (default), always, never, or lazy (when missing: pull --lazy)"),
    (("-v", "--volume"), "volume", "append", None, "bind HOST:CTR[:ro] or named volume NAME:CTR[:ro]"),
    (("--mount",), "mount", "append", None, "type=bind|volume|tmpfs,source=..,target=..[,readonly]"),
    (("--tmpfs",), "tmpfs", "append", None, "a tmpfs at PATH[:OPTIONS]"),
    (("--read-only",), "read_only", "flag", False, "mount the container's root read-only"),
    (("--cap-add",), "cap_add", "append", None, "add a capability (or ALL)"),
    (("--cap-drop",), "cap_drop", "append", None, "drop a capability (or ALL)"),
    (("--privileged",), "privileged", "flag", False, "every capability and host device, no masked paths"),
    (("--device",), "device", "append", None, "a host device HOST[:CONTAINER[:rwm]]"),
    (("-m", "--memory"), "memory", "value", "", "memory limit (bytes, or with k/m/g)"),
    (("--memory-swap",), "memory_swap", "value", "", "memory + swap limit (-1: unlimited swap)"),
    (("--memory-reservation",), "memory_reservation", "value", "", "memory soft limit (bytes, or with k/m/g)"),
    (("--cpus",), "cpus", "value", "", "number of CPUs (CFS quota)"),
    (("--cpu-period",), "cpu_period", "value", "", "CFS period in microseconds (with --cpu-quota; not with --cpus)"),
    (("--cpu-quota",), "cpu_quota", "value", "", "CFS quota in microseconds per period (-1: none)"),
    (("-c", "--cpu-shares"), "cpu_shares", "value", "", "relative CPU weight"),
    (("--cpuset-cpus",), "cpuset_cpus", "value", "", "CPUs it may run on (0-1, 0,1)"),
    (("--pids-limit",), "pids_limit", "value", "", "most processes (-1: unlimited)"),
    (("--ulimit",), "ulimit", "append", None, "NAME=SOFT[:HARD] resource limit"),
    (("--sysctl",), "sysctl", "append", None, "namespaced KEY=VALUE kernel parameter"),
    (("--security-opt",), "security_opt", "append", None, "no-new-privileges[:true|false]"),
    (("--group-add",), "group_add", "append", None, "an additional group (name or id)"),
    (("--add-host",), "add_host", "append", None, "HOST:IP line for /etc/hosts"),
    (("--dns",), "dns", "append", None, "nameserver for /etc/resolv.conf"),
    (("--dns-search",), "dns_search", "append", None, "search domain for /etc/resolv.conf"),
    (("--dns-option",), "dns_option", "append", None, "option for /etc/resolv.conf"),
    (("-l", "--label"), "label", "append", None, "KEY=VALUE metadata"),
    (("--stop-signal",), "stop_signal", "value", "", "signal that stops it (default SIGTERM)"),
    (("--stop-timeout",), "stop_timeout", "value", "", "seconds stop waits before SIGKILL (default 10)"),
    (("--init",), "init", "flag", False, "run an init (tini) as pid 1 that reaps and forwards signals"),
    (("--oom-kill-disable",), "oom_kill_disable", "flag", False, "never OOM-kill it (with --memory)"),
    (("-p", "--publish"), "publish", "append", None, "[IP:][HOSTPORT:]PORT[/tcp|udp]: publish a port (bridge)"),
    (("-P", "--publish-all"), "publish_all", "flag", False, "publish every exposed port on an ephemeral host port"),
    (("--expose",), "expose", "append", None, "PORT[-PORT][/tcp|udp]: expose a port (see -P)"),
    (("--network-alias",), "network_alias", "append", None, "another name peers resolve (user-defined networks)"),
    (("--ip",), "ip", "value", "", "the container's IPv4 address (user-defined networks)"),
    (("-i", "--interactive"), "interactive", "flag", False, "keep stdin open and pass it to the container"),
    (("-t", "--tty"), "tty", "flag", False, "give the container a terminal"),
    (("--restart",), "restart", "value", "no", "restart policy (applied by a daemon): no, on-failure[:N], always, "
     "unless-stopped"),
)
# The API's field for each option beyond the basic ones (Config.X or HostConfig.X) and how
# its value is carried: the daemon client sends them, the API route reads them back.
API_FIELDS: dict[str, tuple[str, str]] = {
    "domainname": ("Config.Domainname", "str"), "label": ("Config.Labels", "map"),
    "entrypoint": ("Config.Entrypoint", "list"),
    "stop_signal": ("Config.StopSignal", "str"), "stop_timeout": ("Config.StopTimeout", "int"),
    "volume": ("HostConfig.Binds", "list"), "mount": ("HostConfig.Mounts", "mounts"),
    "tmpfs": ("HostConfig.Tmpfs", "tmpfs"), "read_only": ("HostConfig.ReadonlyRootfs", "bool"),
    "cap_add": ("HostConfig.CapAdd", "list"), "cap_drop": ("HostConfig.CapDrop", "list"),
    "privileged": ("HostConfig.Privileged", "bool"), "device": ("HostConfig.Devices", "devices"),
    "memory": ("HostConfig.Memory", "bytes"), "memory_swap": ("HostConfig.MemorySwap", "bytes"),
    "memory_reservation": ("HostConfig.MemoryReservation", "bytes"),
    "cpus": ("HostConfig.NanoCpus", "nano"), "cpu_shares": ("HostConfig.CpuShares", "int"),
    "cpu_period": ("HostConfig.CpuPeriod", "int"), "cpu_quota": ("HostConfig.CpuQuota", "int"),
    "cpuset_cpus": ("HostConfig.CpusetCpus", "str"), "pids_limit": ("HostConfig.PidsLimit", "int"),
    "ulimit": ("HostConfig.Ulimits", "ulimits"), "sysctl": ("HostConfig.Sysctls", "map"),
    "security_opt": ("HostConfig.SecurityOpt", "list"), "group_add": ("HostConfig.GroupAdd", "list"),
    "add_host": ("HostConfig.ExtraHosts", "list"), "dns": ("HostConfig.Dns", "list"),
    "dns_search": ("HostConfig.DnsSearch", "list"), "dns_option": ("HostConfig.DnsOptions", "list"),
    "init": ("HostConfig.Init", "bool"), "oom_kill_disable": ("HostConfig.OomKillDisable", "bool"),
}  # fmt: skip
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, what: str) -> int:
    """Docker's RAMInBytes: `10m`, `1.5g`, `512k`, `10MiB`, `1024`; `-1` stays -1 (unlimited)."""
    import re

    match = re.fullmatch(r"\s*(-?[0-9]+(?:\.[0-9]+)?)\s*([bkmgt]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise UsageError(f"invalid size for {what}: {text!r} (bytes, or a number with b, k, m, g, t)")
    value = float(match.group(1))
    return -1 if value == -1 else int(value * SIZE_UNITS[match.group(2)])


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"invalid value for {what}: {text!r} is not an integer") from None


def parse_nano(text: str, what: str) -> int:
    from decimal import Decimal, InvalidOperation

    try:
        return int(Decimal(text) * 1_000_000_000)
    except InvalidOperation:
        raise UsageError(f"invalid value for {what}: {text!r} is not a number") from None


def mount_to_api(text: str) -> dict:
    """`--mount type=bind,source=/a,target=/b,readonly` as the API's Mount object."""
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        fields[key.strip().lower()] = value if sep else "true"
    mount: dict = {"Type": fields.pop("type", "volume")}
    for keys, name in ((("source", "src"), "Source"), (("target", "destination", "dst"), "Target")):
        for key in keys:
            if key in fields:
                mount[name] = fields.pop(key)
    for key in ("readonly", "ro"):
        if key in fields:
            mount["ReadOnly"] = fields.pop(key) in ("true", "1")
    tmpfs = {}
    if "tmpfs-size" in fields:
        tmpfs["SizeBytes"] = parse_size(fields.pop("tmpfs-size"), "--mount tmpfs-size")
    if "tmpfs-mode" in fields:
        mode = fields.pop("tmpfs-mode")
        try:
            tmpfs["Mode"] = int(mode, 8)
        except ValueError:
            raise UsageError(f"--mount tmpfs-mode: {mode!r} is not an octal mode (like 1777)") from None
    if tmpfs:
        mount["TmpfsOptions"] = tmpfs
    if fields:
        raise UsageError(f"--mount: unsupported key {sorted(fields)[0]!r} (type, source, target, readonly, "
                         "tmpfs-size, tmpfs-mode)")
    return mount


def to_api(values: dict) -> dict[str, dict]:
    """The API fields (under "Config" and "HostConfig") of the options in API_FIELDS."""
    out: dict[str, dict] = {"Config": {}, "HostConfig": {}}
    for dest, (path, kind) in API_FIELDS.items():
        value = values.get(dest)
        if value in (None, "", [], False):
            continue
        section, name = path.split(".")
        what = f"--{dest.replace('_', '-')}"
        if kind in ("str", "list", "bool"):
            converted = value
        elif kind == "int":
            converted = _parse_int(value, what)
        elif kind == "bytes":
            converted = parse_size(value, what)
        elif kind == "nano":
            converted = parse_nano(value, what)
        elif kind == "map":
            converted = dict(item.partition("=")[::2] for item in value)
        elif kind == "tmpfs":
            converted = {item.partition(":")[0]: item.partition(":")[2] for item in value}
        elif kind == "ulimits":
            converted = []
            for item in value:
                name_, _, limits = item.partition("=")
                soft, _, hard = limits.partition(":")
                converted.append({"Name": name_, "Soft": _parse_int(soft, what),
                                  "Hard": _parse_int(hard or soft, what)})
        elif kind == "devices":
            converted = []
            for item in value:
                parts = item.split(":")
                converted.append({"PathOnHost": parts[0], "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
                                  "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm"})
        else:  # mounts
            converted = [mount_to_api(item) for item in value]
        out[section][name] = converted
    return out


def from_api(config: dict, host_config: dict) -> dict:
    """The options of the API fields in API_FIELDS (what `to_api` made, or any client's)."""
    values: dict = {}
    for dest, (path, kind) in API_FIELDS.items():
        section, name = path.split(".")
        value = (config if section == "Config" else host_config).get(name)
        if value in (None, "", [], {}, False, 0):
            continue
        if kind == "str" or kind == "int" or kind == "bytes":
            values[dest] = str(value)
        elif kind == "bool":
            values[dest] = bool(value)
        elif kind == "list":
            values[dest] = [str(v) for v in value]
        elif kind == "nano":
            from decimal import Decimal

            values[dest] = str(Decimal(int(value)) / Decimal(1_000_000_000))
        elif kind == "map":
            values[dest] = [f"{k}={v}" for k, v in value.items()]
        elif kind == "tmpfs":
            values[dest] = [f"{k}:{v}" if v else k for k, v in value.items()]
        elif kind == "ulimits":
            values[dest] = [f"{u['Name']}={u['Soft']}:{u['Hard']}" for u in value]
        elif kind == "devices":
            values[dest] = [f"{d['PathOnHost']}:{d.get('PathInContainer') or d['PathOnHost']}:"
                            f"{d.get('CgroupPermissions') or 'rwm'}" for d in value]
        else:  # mounts
            values[dest] = [_mount_from_api(m) for m in value]
    return values


def _mount_from_api(m: dict) -> str:
    parts = [f"type={m.get('Type') or 'volume'}"]
    if m.get("Source"):
        parts.append(f"source={m['Source']}")
    parts.append(f"target={m.get('Target') or ''}")
    if m.get("ReadOnly"):
        parts.append("readonly")
    tmpfs = m.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        parts.append(f"tmpfs-size={tmpfs['SizeBytes']}")
    if tmpfs.get("Mode"):
        parts.append(f"tmpfs-mode={tmpfs['Mode']:o}")
    for key in ("BindOptions", "VolumeOptions", "Consistency"):
        if m.get(key):
            raise UsageError(f"Mounts: {key} is not supported by strata")
    return ",".join(parts)


PULL_POLICIES = ("missing", "always", "never", "lazy")
CHOICES = {"pull": PULL_POLICIES}  # the options whose values are one of a few


NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Docker's rule (at least two characters)
MAX_NAME = 255  # a name is a GraphDB key and appears in every listing: bounded
HOSTNAME_LABEL_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?")  # RFC 1123
MAX_HOSTNAME = 64  # the kernel's HOST_NAME_MAX: sethostname(2) refuses longer


class UsageError(Exception):
    """Arguments `parse_run` cannot take; the message says which."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a container (None: it can)."""
    if len(name) > MAX_NAME:
        return f"invalid container name ({len(name)} characters): at most {MAX_NAME} are allowed"
    if not NAME_RE.fullmatch(name):
        return f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed"
    return None


def hostname_problem(hostname: str) -> str | None:
    """Why `hostname` cannot be a container's hostname (None: it can)."""
    if len(hostname) > MAX_HOSTNAME or not all(HOSTNAME_LABEL_RE.fullmatch(label) for label in hostname.split(".")):
        return (f"invalid hostname {hostname[:80]!r}: RFC 1123 labels (letters, digits, inner hyphens) joined by "
                f"dots, at most {MAX_HOSTNAME} characters")
    return None


def parse_run(argv: list[str]) -> SimpleNamespace:
    """`run`'s arguments as argparse would read them with `add_create_arguments`: options
    (`-e X`, `-eX`, `--env=X`) up to the image, everything after it is the command."""
    table = {flag: (dest, kind) for flags, dest, kind, _default, _help in OPTIONS for flag in flags}
    values: dict[str, object] = {dest: ([] if kind == "append" else default)
                                 for _flags, dest, kind, default, _help in OPTIONS}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        word = argv[i]
        if word == "--":
            i += 1
            break
        flag, has_value, inline = word.partition("=") if word.startswith("--") else (word[:2], False, word[2:])
        if flag not in table:
            raise UsageError(f"unknown option {word!r} (see strata run --help)")
        dest, kind = table[flag]
        if kind == "flag":
            if inline and not has_value and not word.startswith("--") and not inline.startswith("="):
                values[dest] = True
                argv = [*argv[:i], "-" + inline, *argv[i + 1 :]]  # -it: -i, then -t
                continue
            if has_value or inline:
                raise UsageError(f"option {flag} takes no value")
            values[dest] = True
            i += 1
            continue
        if not (has_value or inline):
            if i + 1 >= len(argv):
                raise UsageError(f"option {flag} needs a value")
            inline, i = argv[i + 1], i + 1
        if dest in CHOICES and inline not in CHOICES[dest]:
            raise UsageError(f"{flag} must be one of {', '.join(CHOICES[dest])}, not {inline!r}")
        if kind == "append":
            values[dest].append(inline)  # type: ignore[union-attr]
        else:
            values[dest] = inline
        i += 1
    if i >= len(argv):
        raise UsageError("run needs an IMAGE (strata -H HOST run [OPTIONS] IMAGE [COMMAND...])")
    return SimpleNamespace(image=argv[i], args=argv[i + 1 :], **values)


def publish_bindings(specs: list[str]) -> dict[str, list[dict[str, str]]]:
    """`-p` values as the API's HostConfig.PortBindings (the daemon checks them)."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        rest, _, proto = spec.partition("/")
        parts = rest.split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        host_port = parts[-2] if len(parts) >= 2 else ""
        bindings.setdefault(f"{parts[-1]}/{proto or 'tcp'}", []).append({"HostIp": host_ip, "HostPort": host_port})
    return bindings

"""A container's record: its config and state, persisted as JSON beside its logs.

`<root>/containers/<id>/config.v2.json` (written atomically) is the truth about a
container; `<id>-json.log` is its output (logfile.py) and `exec/` is the execdriver's
state (the monitor's exit file, the OCI bundle). A new engine rebuilds everything it
knows about containers from these files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..network import ports
from ..network.ports import PortBinding
from . import logfile

CONFIG_FILE = "config.v2.json"

CREATED = "created"
RUNNING = "running"
EXITED = "exited"


def restart_policy_json(policy: str) -> dict[str, Any]:
    """Docker's {"Name", "MaximumRetryCount"} of a policy as `--restart` spells it."""
    name, _, count = policy.partition(":")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": int(count or 0)}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class State:
    status: str = CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ""
    finished_at: str = ""
    paused: bool = False  # its processes are frozen (freezer cgroup)

    @property
    def running(self) -> bool:
        return self.status == RUNNING


@dataclass
class Container:
    id: str
    name: str
    created: str
    image: str  # image id
    image_ref: str  # what the user asked for (`Config.Image`)
    args: list[str]  # the full command: entrypoint + cmd
    env: list[str]
    workdir: str
    user: str
    hostname: str
    network: str = "none"  # none, host, or the name of its (first) bridge network
    ports: list[dict[str, Any]] = field(default_factory=list)  # -p bindings (network.ports.PortBinding)
    publish_all: bool = False  # -P
    exposed: list[str] = field(default_factory=list)  # "80/tcp": the image's and --expose's
    auto_remove: bool = False
    tty: bool = False  # -t: stdin, stdout and stderr are a terminal
    open_stdin: bool = False  # -i: a stdin that attach streams write to
    stdin_once: bool = False  # close that stdin when the first attached client closes its own
    console_size: list[int] = field(default_factory=list)  # the terminal's size at start: [rows, cols] (API)
    restart_policy: str = "no"  # no, on-failure[:N], always, unless-stopped (restart.py applies it)
    restart_count: int = 0  # restarts by the policy since the last start by a user
    manually_stopped: bool = False  # stopped by a user: `always` restarts it at daemon start, `unless-stopped` not
    resources: dict[str, int | str] = field(default_factory=dict)  # cgroup limits set by `update` (HostConfig names)
    layer: str = ""  # the driver's read-write layer (the container id)
    parent_layer: str | None = None  # what `diff` compares against: the init layer or the image's top
    init_layer: str | None = None  # mount points the image lacked (/proc, /dev, /sys)
    execdriver: str = "oci"
    exec_options: dict[str, str] = field(default_factory=dict)
    state: State = field(default_factory=State)
    monitor: dict[str, Any] | None = None  # execdrivers.MonitorInfo as JSON while it runs
    rootfs: str | None = None  # where the layer was mounted when the process started
    settings: dict[str, Any] = field(default_factory=dict)  # execdrivers.settings.Settings as JSON
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""  # "" = SIGTERM
    stop_timeout: int | None = None  # None = the stop request's (10 s)
    volumes: list[list] = field(default_factory=list)  # [name, destination, read-only] of named volumes
    etc: dict[str, list] = field(default_factory=dict)  # extra_hosts, dns, dns_search, dns_options: /etc files
    entrypoint: list[str] = field(default_factory=list)  # Config.Entrypoint after the merge (command.resolve)
    cmd: list[str] = field(default_factory=list)  # Config.Cmd after the merge

    # -- files -------------------------------------------------------------------------

    @staticmethod
    def dir_of(containers_dir: str, container_id: str) -> str:
        return os.path.join(containers_dir, container_id)

    def paths(self, containers_dir: str) -> tuple[str, str, str]:
        """(its directory, its log (logfile.py), execdriver state directory)."""
        d = self.dir_of(containers_dir, self.id)
        return d, logfile.log_path(d, self.id), os.path.join(d, "exec")

    def save(self, containers_dir: str) -> None:
        d = self.dir_of(containers_dir, self.id)
        tmp = os.path.join(d, CONFIG_FILE + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(asdict(self)))  # one write: json.dump writes piecemeal
        os.rename(tmp, os.path.join(d, CONFIG_FILE))

    @classmethod
    def load(cls, containers_dir: str, container_id: str) -> Container:
        with open(os.path.join(cls.dir_of(containers_dir, container_id), CONFIG_FILE)) as f:
            raw = json.load(f)
        raw["state"] = State(**raw["state"])
        if "cmd" not in raw:  # a record from before entrypoint and cmd were kept apart
            raw["cmd"] = raw["args"]
        return cls(**raw)

    # -- views -------------------------------------------------------------------------

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def inspect(self, driver_name: str, driver_data: dict[str, str], log_path: str) -> dict[str, Any]:
        """Docker's `inspect` shape, for the fields strata has."""
        s = self.state
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": self.args[0] if self.args else "",
            "Args": self.args[1:],
            "State": {
                "Status": "paused" if s.paused and s.running else s.status,
                "Running": s.running,
                "Paused": s.paused and s.running,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": s.pid if s.running else 0,
                "ExitCode": s.exit_code,
                "Error": s.error,
                "StartedAt": s.started_at or "0001-01-01T00:00:00Z",
                "FinishedAt": s.finished_at or "0001-01-01T00:00:00Z",
            },
            "Image": self.image,
            "LogPath": log_path,
            "Monitor": self.monitor,
            "Name": "/" + self.name,
            "Driver": driver_name,
            "ExecDriver": self.execdriver_description(),
            "RestartCount": self.restart_count,
            "HostConfig": {**self.host_config(), "RestartPolicy": restart_policy_json(self.restart_policy),
                           **self.resources},
            "Mounts": self.mounts(),
            "GraphDriver": {"Name": driver_name, "Data": driver_data},
            "Config": {
                "Hostname": self.hostname,
                "User": self.user,
                "Env": self.env,
                "Cmd": self.cmd,
                "Entrypoint": self.entrypoint or None,
                "Image": self.image_ref,
                "WorkingDir": self.workdir,
                "Domainname": self.settings.get("domainname", ""),
                "Labels": self.labels,
                "StopSignal": self.stop_signal or "SIGTERM",
                **({"StopTimeout": self.stop_timeout} if self.stop_timeout is not None else {}),
                "ExposedPorts": {key: {} for key in self.exposed},
                "Tty": self.tty,
                "OpenStdin": self.open_stdin,
                "StdinOnce": self.stdin_once,
                "AttachStdin": self.open_stdin,
            },
        }

    def host_config(self) -> dict[str, Any]:
        """The HostConfig fields strata honours, as Docker's inspect names them."""
        s = self.settings
        r = s.get("resources", {})
        return {
            "NetworkMode": self.network, "AutoRemove": self.auto_remove,
            "PortBindings": port_bindings(self.ports), "PublishAllPorts": self.publish_all,
            "ExtraHosts": [f"{h}:{a}" for h, a in self.etc.get("extra_hosts", [])] or None,
            "Dns": self.etc.get("dns", []), "DnsSearch": self.etc.get("dns_search", []),
            "DnsOptions": self.etc.get("dns_options", []),
            "ReadonlyRootfs": s.get("readonly_rootfs", False), "Privileged": s.get("privileged", False),
            "CapAdd": s.get("cap_add") or None, "CapDrop": s.get("cap_drop") or None,
            "Memory": r.get("memory", 0), "MemorySwap": r.get("memory_swap", 0),
            "MemoryReservation": r.get("memory_reservation", 0),
            "NanoCpus": r.get("cpu_quota", 0) * 1_000_000_000 // r["cpu_period"] if r.get("cpu_period") else 0,
            "CpuPeriod": r.get("cpu_period", 0), "CpuQuota": r.get("cpu_quota", 0),
            "CpuShares": r.get("cpu_shares", 0), "CpusetCpus": r.get("cpuset_cpus", ""),
            "PidsLimit": r.get("pids_limit") or None, "OomKillDisable": r.get("oom_kill_disable", False),
            "Ulimits": [{"Name": u["name"], "Soft": u["soft"], "Hard": u["hard"]} for u in s.get("ulimits", [])],
            "Sysctls": dict(s.get("sysctls", [])), "GroupAdd": s.get("group_add") or None,
            "Init": bool(s.get("init")),
            "SecurityOpt": ["no-new-privileges"] if s.get("no_new_privileges") else None,
            "Devices": [{"PathOnHost": "", "PathInContainer": d["path"], "CgroupPermissions": d["permissions"]}
                        for d in s.get("devices", [])],
        }  # fmt: skip

    def mounts(self) -> list[dict[str, Any]]:
        """Docker's inspect `Mounts`: the binds, tmpfs and named volumes asked for."""
        found = [{"Type": "tmpfs" if m["type"] == "tmpfs" else "bind", "Source": m["source"] if m["type"] == "bind"
                  else "", "Destination": m["destination"], "Mode": "", "RW": "ro" not in m["options"],
                  "Propagation": "rprivate" if m["type"] == "bind" else ""}
                 for m in self.settings.get("mounts", [])]
        found += [{"Type": "volume", "Name": name, "Driver": "local", "Destination": dest, "Mode": "",
                   "RW": not read_only, "Propagation": ""} for name, dest, read_only in self.volumes]
        return found

    def port_bindings(self) -> list[PortBinding]:
        return [ports.from_json(raw) for raw in self.ports]

    def execdriver_description(self) -> str:
        if self.execdriver == "oci":
            return f"oci ({self.exec_options.get('exec.runtime', 'runc')})"
        return self.execdriver


def port_bindings(raw: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings: what was asked for (`NetworkSettings.Ports` has what was bound)."""
    found: dict[str, list[dict[str, str]]] = {}
    for binding in map(ports.from_json, raw):
        found.setdefault(binding.key, []).append(
            {"HostIp": binding.host_ip, "HostPort": str(binding.host_port) if binding.host_port else ""})
    return found

"""Networks, their endpoints and address allocations, persisted in one JSON file.

`<root>/network/networks.json` (replaced atomically) is the truth about every network:
its subnet, gateway, allocation range and bridge, and per member container an endpoint
whose address, MAC, veth and published ports are set while the container runs. IPAM is
this file: an address is allocated when it is recorded here, so allocations survive
engine restarts, and a restart releases those of containers that stopped meanwhile.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import Conflict, UsageError
from .ports import PortBinding, from_json

STATE_FILE = "networks.json"
BRIDGE, HOST, NULL = "bridge", "host", "null"
BUILTIN = {"bridge": BRIDGE, "host": HOST, "none": NULL}


@dataclass
class Endpoint:
    container: str  # id
    name: str  # the container's name (what peers resolve)
    aliases: list[str] = field(default_factory=list)
    ip: str = ""  # the address (with prefix) while the container runs, else ""
    mac: str = ""
    veth: str = ""  # the host end
    ifname: str = ""  # inside the container
    ports: list[PortBinding] = field(default_factory=list)  # published (on the primary network)
    wanted_ip: str = ""  # --ip / IPAMConfig: the address asked for
    hostname: str = ""  # the container's, for its own line in /etc/hosts

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Endpoint:
        raw = dict(raw)
        raw["ports"] = [from_json(p) for p in raw.get("ports", [])]
        return cls(**raw)


@dataclass
class Network:
    id: str
    name: str
    driver: str  # bridge, host or null
    created: str
    subnet: str = ""  # 172.18.0.0/16
    gateway: str = ""  # 172.18.0.1 (the bridge's address)
    ip_range: str = ""  # where container addresses come from (--fixed-cidr, IPRange); "" = the subnet
    bridge: str = ""  # the interface name
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return BUILTIN.get(self.name) == self.driver

    @property
    def resolves_names(self) -> bool:
        """User-defined bridges give members each other's names; Docker's default bridge does not."""
        return self.driver == BRIDGE and self.name != "bridge"

    def interface(self, ip: str) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{ip}/{ipaddress.IPv4Network(self.subnet).prefixlen}")

    def running(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.ip]

    def allocate(self, endpoint: Endpoint) -> ipaddress.IPv4Interface:
        """The endpoint's address: the one asked for, else the first free one of the range."""
        subnet = ipaddress.IPv4Network(self.subnet)
        used = {e.ip for e in self.running() if e is not endpoint} | {self.gateway}
        if endpoint.wanted_ip:
            if endpoint.wanted_ip in used:
                raise Conflict(f"address {endpoint.wanted_ip} is already in use on network {self.name}")
            return self.interface(endpoint.wanted_ip)
        pool = ipaddress.IPv4Network(self.ip_range) if self.ip_range else subnet
        for host in pool.hosts() if pool.prefixlen < 31 else pool:
            if host not in (subnet.network_address, subnet.broadcast_address) and str(host) not in used:
                return self.interface(str(host))
        raise Conflict(f"no free address left in {pool} on network {self.name}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Network:
        raw = dict(raw)
        raw["endpoints"] = {k: Endpoint.from_json(v) for k, v in raw.get("endpoints", {}).items()}
        return cls(**raw)


def check_addressing(subnet: str, gateway: str, ip_range: str) -> tuple[str, str, str]:
    """(subnet, gateway, range) normalised; a malformed or inconsistent one is a UsageError."""
    try:
        net = ipaddress.IPv4Network(subnet, strict=False)
        gw = ipaddress.IPv4Address(gateway) if gateway else next(net.hosts())
        pool = ipaddress.IPv4Network(ip_range, strict=True) if ip_range else None
    except (ValueError, StopIteration) as exc:
        raise UsageError(f"invalid IPv4 addressing (subnet {subnet!r}, gateway {gateway!r}, range {ip_range!r}): "
                         f"{exc}") from None
    if net.prefixlen > 30:
        raise UsageError(f"subnet {net} is too small for a bridge network (at most /30)")
    if gw not in net:
        raise UsageError(f"gateway {gw} is not in subnet {net}")
    if pool is not None and not pool.subnet_of(net):
        raise UsageError(f"IP range {pool} is not inside subnet {net}")
    return str(net), str(gw), str(pool) if pool else ""


class NetworkState:
    """The networks of one root, loaded at start and saved after every change."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, STATE_FILE)
        self.networks: dict[str, Network] = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.networks = {k: Network.from_json(v) for k, v in json.load(f).items()}

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps({k: n.to_json() for k, n in self.networks.items()}))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)

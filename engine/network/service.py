"""The networkdriver: networks `none`, `host` and bridges, and the container hooks.

The container store calls four hooks: `join` when a container is created on a bridge
network (it becomes a member), `attach` before its process starts (a namespace file,
a veth per network with an allocated address, /etc files, NAT), `detach` when the
process has ended (everything `attach` made is released; membership stays) and `forget`
when the container is removed. `repair` at engine start releases what a crash or a
container that ended unwatched left: endpoints, namespace files, veths, rules.

`default_mode` is what a container without `--network` gets: `none` for the standalone
CLI (a command must not change the host's interfaces and firewall unless asked), and
`bridge` once `strata daemon` has set up the default bridge, as dockerd does.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict, NetworkError, NoSuchNetwork, UsageError
from . import links, nat, netns, ports
from .state import BRIDGE, BUILTIN, HOST, NULL, Endpoint, Network, NetworkState, check_addressing

log = logging.getLogger(__name__)

DEFAULT_BRIDGE = "strata0"
DEFAULT_BIP = "172.17.0.1/16"
AUTO_SUBNETS = [f"172.{n}.0.0/16" for n in range(18, 32)] + [f"192.168.{n}.0/20" for n in range(0, 256, 16)]
VETH_PREFIX = "stv"
NAT_MARKER = "nat.applied"  # present while the kernel may hold a strata table
NULL_MODE = "none"


@dataclass(frozen=True)
class Attachment:
    """What the execdriver needs for a bridged container: the namespace to join."""

    netns_path: str


def _now() -> str:
    from ..containers.record import now_iso

    return now_iso()


class Networks:
    """The networks of one engine root (`<root>/network/`)."""

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "network")
        self.state = NetworkState(self.dir)
        self.netns_dir = os.path.join(self.dir, "netns")
        self.default_mode = NULL_MODE
        self.bridge_disabled = False  # `daemon --bridge none`: there is no default bridge, as with dockerd -b none
        # Called with a container id when its /etc files must be rewritten (its addresses or
        # its peers changed); the container store, their one writer, sets it.
        self.files_changed: Callable[[str], None] = lambda container_id: None
        self._lock = threading.RLock()
        for name, driver in BUILTIN.items():
            if self._find(name) is None:
                net = Network(secrets.token_hex(32), name, driver, _now())
                if driver == BRIDGE:
                    net.subnet, net.gateway, net.ip_range = check_addressing(DEFAULT_BIP, DEFAULT_BIP.split("/")[0], "")
                    net.bridge = DEFAULT_BRIDGE
                self.state.networks[net.id] = net
        self.state.save()

    # -- lookup ------------------------------------------------------------------------

    def _find(self, ref: str) -> Network | None:
        nets = self.state.networks
        if ref in nets:
            return nets[ref]
        by_name = [n for n in nets.values() if n.name == ref]
        if by_name:
            return by_name[0]
        by_prefix = [n for n in nets.values() if ref and n.id.startswith(ref)]
        if len(by_prefix) > 1:
            raise Conflict(f"network id prefix {ref!r} is ambiguous ({len(by_prefix)} networks match)")
        return by_prefix[0] if by_prefix else None

    def get(self, ref: str) -> Network:
        with self._lock:
            found = self._find(ref)
            if found is None:
                raise NoSuchNetwork(ref)
            return found

    def list(self) -> list[Network]:
        with self._lock:
            return sorted(self.state.networks.values(), key=lambda n: n.created)

    # -- the daemon's default bridge -----------------------------------------------------

    def configure_default(self, bip: str, fixed_cidr: str, bridge: str) -> None:
        """`strata daemon --bip --fixed-cidr --bridge`: set up the default bridge and make it
        the default network (`--bridge none`: containers get `none`, as dockerd's -b none)."""
        with self._lock:
            if bridge == "none":
                self.default_mode = NULL_MODE
                self.bridge_disabled = True
                return
            net = self.get("bridge")
            bip = bip or DEFAULT_BIP
            if "/" not in bip:
                raise UsageError(f"--bip {bip!r} must be an address with a prefix length (172.17.0.1/16)")
            subnet, gateway, ip_range = check_addressing(bip, bip.split("/")[0], fixed_cidr)
            wanted = (subnet, gateway, ip_range, bridge or DEFAULT_BRIDGE)
            if (net.subnet, net.gateway, net.ip_range, net.bridge) != wanted:
                if net.running():
                    raise Conflict("the default bridge's addressing cannot change while containers on it run")
                net.subnet, net.gateway, net.ip_range, net.bridge = wanted
                self.state.save()
            links.ensure_bridge(net.bridge, net.interface(net.gateway))
            self.default_mode = "bridge"

    # -- user-defined networks -----------------------------------------------------------

    def create(self, name: str, *, driver: str = BRIDGE, subnet: str = "", gateway: str = "", ip_range: str = "",
               internal: bool = False, labels: dict[str, str] | None = None) -> Network:
        if driver != BRIDGE:
            raise UsageError(f"network driver {driver!r} is not supported: strata creates bridge networks "
                             "(host and none exist once)")
        if not name or not all(ch.isalnum() or ch in "_.-" for ch in name) or not name[0].isalnum():
            raise UsageError(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        with self._lock:
            if any(n.name == name for n in self.state.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            if gateway and not subnet:
                raise UsageError("a gateway needs a subnet (--subnet)")
            if ip_range and not subnet:
                raise UsageError("an IP range needs a subnet (--subnet)")
            subnet = subnet or self._free_subnet()
            subnet, gateway, ip_range = check_addressing(subnet, gateway, ip_range)
            for other in self.state.networks.values():
                if other.subnet and ipaddress.IPv4Network(other.subnet).overlaps(ipaddress.IPv4Network(subnet)):
                    raise Conflict(f"subnet {subnet} overlaps network {other.name} ({other.subnet})")
            net = Network(secrets.token_hex(32), name, BRIDGE, _now(), subnet, gateway, ip_range, internal=internal,
                          labels=dict(labels or {}))
            net.bridge = "br-" + net.id[:12]
            links.ensure_bridge(net.bridge, net.interface(net.gateway))
            self.state.networks[net.id] = net
            self.state.save()
            log.info("network %s created: %s on %s", name, subnet, net.bridge)
            return net

    def _free_subnet(self) -> str:
        used = [ipaddress.IPv4Network(n.subnet) for n in self.state.networks.values() if n.subnet]
        for candidate in AUTO_SUBNETS:
            if not any(ipaddress.IPv4Network(candidate).overlaps(u) for u in used):
                return candidate
        raise Conflict("all of strata's default address pools are in use; give --subnet")

    def remove(self, ref: str) -> None:
        with self._lock:
            net = self.get(ref)
            if net.builtin:
                raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
            if net.endpoints:
                names = ", ".join(sorted(e.name for e in net.endpoints.values()))
                raise Conflict(f"error while removing network: network {net.name} id {net.id} has active "
                               f"endpoints ({names})")
            links.remove_link(net.bridge)
            del self.state.networks[net.id]
            self.state.save()

    def prune(self) -> list[str]:
        """Remove every user-defined network without members; their names."""
        with self._lock:
            gone = [n for n in self.state.networks.values() if not n.builtin and not n.endpoints]
            for n in gone:
                self.remove(n.id)
            return [n.name for n in gone]

    # -- membership ----------------------------------------------------------------------

    def resolve_mode(self, mode: str) -> str:
        """A create's `--network` as the record keeps it: none, host, or a bridge network's name."""
        mode = mode or "default"
        if mode == "default":
            return self.default_mode
        if mode.startswith("container:"):
            raise UsageError("--network container:NAME is not supported by strata's networkdriver")
        net = self.get(mode)
        if self.bridge_disabled and net.name == "bridge":
            raise UsageError(f"NetworkMode {mode!r}: the default bridge is disabled (the daemon runs with "
                             "--bridge none)")
        return {NULL: NULL_MODE, HOST: "host"}.get(net.driver, net.name)

    def join(self, container_id: str, name: str, hostname: str, mode: str, aliases: list[str] | None = None,
             ip: str = "") -> None:
        """A new container on network `mode` becomes its member (none and host have none)."""
        if mode in (NULL_MODE, "host"):
            if aliases or ip:
                raise UsageError(f"network-scoped aliases and addresses need a bridge network, not {mode}")
            return
        with self._lock:
            net = self.get(mode)
            net.endpoints[container_id] = self._endpoint(net, container_id, name, hostname, aliases, ip)
            self.state.save()

    def _endpoint(self, net: Network, container_id: str, name: str, hostname: str, aliases: list[str] | None,
                  ip: str) -> Endpoint:
        if ip:
            if net.name == "bridge":
                raise UsageError("user specified IP address is supported on user defined networks only")
            try:
                address = ipaddress.IPv4Address(ip)
            except ValueError:
                raise UsageError(f"invalid IPv4 address {ip!r}") from None
            if address not in ipaddress.IPv4Network(net.subnet):
                raise UsageError(f"address {ip} is not in network {net.name}'s subnet {net.subnet}")
        if aliases and not net.resolves_names:
            raise UsageError("network-scoped aliases are supported for user-defined networks only")
        return Endpoint(container_id, name, list(aliases or []), wanted_ip=ip, hostname=hostname)

    def connect(self, ref: str, container_id: str, name: str, hostname: str, mode: str,
                aliases: list[str] | None = None, ip: str = "") -> None:
        """`network connect`: membership, and an interface now if the container runs."""
        with self._lock:
            net = self.get(ref)
            if self.bridge_disabled and net.name == "bridge":
                raise UsageError("the default bridge is disabled (the daemon runs with --bridge none)")
            if net.driver != BRIDGE or mode in (NULL_MODE, "host"):
                raise Conflict(f"container {name} on network mode {mode} cannot be connected to network {net.name}"
                               if net.driver == BRIDGE else f"containers cannot be connected to network {net.name}")
            if container_id in net.endpoints:
                raise Conflict(f"endpoint with name {name} already exists in network {net.name}")
            endpoint = self._endpoint(net, container_id, name, hostname, aliases, ip)
            net.endpoints[container_id] = endpoint
            path = self._netns_path(container_id)
            if netns.is_held(path):
                index = sum(1 for n in self.state.networks.values() if container_id in n.endpoints
                            and n.endpoints[container_id].ifname)
                try:
                    self._plug(net, endpoint, path, f"eth{index}", primary=False, wanted=[])
                except BaseException:
                    self._unplug(net, endpoint)
                    del net.endpoints[container_id]
                    self.state.save()
                    raise
                self._after_change(net)
            self.state.save()

    def disconnect(self, ref: str, container_id: str, mode: str) -> None:
        with self._lock:
            net = self.get(ref)
            endpoint = net.endpoints.get(container_id)
            if endpoint is None:
                raise Conflict(f"container {container_id[:12]} is not connected to network {net.name}")
            if net.name == mode and endpoint.ip:
                raise Conflict(f"container {endpoint.name} runs with {net.name} as its network mode: stop it "
                               "before disconnecting it")
            self._unplug(net, endpoint)
            del net.endpoints[container_id]
            self.state.save()
            self._after_change(net)

    def forget(self, container_id: str) -> None:
        """The container is removed: it leaves every network."""
        with self._lock:
            self.detach(container_id)
            for net in self.state.networks.values():
                net.endpoints.pop(container_id, None)
            self.state.save()

    # -- start and stop ------------------------------------------------------------------

    def _netns_path(self, container_id: str) -> str:
        return os.path.join(self.netns_dir, container_id)

    def _memberships(self, container_id: str, mode: str) -> list[Network]:
        """The networks the container is a member of, its network mode's first."""
        nets = [n for n in self.state.networks.values() if container_id in n.endpoints]
        return sorted(nets, key=lambda n: n.name != mode)

    def attach(self, container_id: str, mode: str, wanted: list[ports.PortBinding]) -> Attachment | None:
        """Before the container starts: its namespace, interfaces, /etc files and NAT rules."""
        if mode in (NULL_MODE, "host"):
            if wanted:
                raise UsageError(f"published ports need a bridge network; this container's network is {mode}")
            return None
        with self._lock:
            nets = self._memberships(container_id, mode)
            if not nets or nets[0].name != mode:
                raise NoSuchNetwork(mode)
            path = self._netns_path(container_id)
            netns.remove(path)  # a leftover of a crash
            netns.create(path)
            try:
                for i, net in enumerate(nets):
                    self._plug(net, net.endpoints[container_id], path, f"eth{i}", primary=i == 0,
                               wanted=wanted if i == 0 else [])
                self._apply_nat()
                self.files_changed(container_id)
                for net in nets:
                    self._refresh_peers(net, container_id)
            except BaseException:
                self.detach(container_id)
                raise
            self.state.save()
            return Attachment(path)

    def _plug(self, net: Network, endpoint: Endpoint, path: str, ifname: str, *, primary: bool,
              wanted: list[ports.PortBinding]) -> None:
        taken = [p for n in self.state.networks.values() for e in n.running() for p in e.ports]
        bound = ports.allocate(wanted, taken)
        links.ensure_bridge(net.bridge, net.interface(net.gateway))
        address = net.allocate(endpoint)
        endpoint.ip, endpoint.mac = str(address.ip), links.mac_of(address.ip)
        endpoint.veth = VETH_PREFIX + links.veth_name(f"{net.id}/{endpoint.container}")[len(links.VETH_PREFIX):]
        endpoint.ifname, endpoint.ports = ifname, bound
        self.state.save()  # recorded before the veth exists: repair can always find and release it
        links.add_endpoint(net.bridge, endpoint.veth, path, ifname, address,
                           ipaddress.IPv4Address(net.gateway) if primary else None)

    def _unplug(self, net: Network, endpoint: Endpoint) -> None:
        if endpoint.veth:
            links.remove_link(endpoint.veth)
        endpoint.ip = endpoint.mac = endpoint.veth = endpoint.ifname = ""
        endpoint.ports = []

    def detach(self, container_id: str) -> None:
        """After the container's process ended: release all `attach` made; idempotent."""
        with self._lock:
            changed = [n for n in self.state.networks.values()
                       if container_id in n.endpoints and n.endpoints[container_id].ip]
            for net in changed:
                self._unplug(net, net.endpoints[container_id])
            netns.remove(self._netns_path(container_id))
            if changed:
                self.state.save()
                self._apply_nat()
                for net in changed:
                    self._refresh_peers(net, container_id)

    def _after_change(self, net: Network) -> None:
        self._apply_nat()
        for e in net.running():
            self.files_changed(e.container)

    def _apply_nat(self) -> None:
        marker = os.path.join(self.dir, NAT_MARKER)
        networks = list(self.state.networks.values())
        if any(n.running() for n in networks):
            open(marker, "w").close()  # before: a crash after the rules leaves the marker
            nat.apply(networks)
        elif os.path.exists(marker):
            nat.apply(networks)  # removes the table
            os.unlink(marker)

    # -- /etc files ----------------------------------------------------------------------

    def host_entries(self, container_id: str, mode: str) -> tuple[list[tuple[str, list[str]]],
                                                                   list[tuple[str, list[str]]]]:
        """(own, peers) lines of the container's /etc/hosts: its addresses (its network
        mode's first) and the running members of its user-defined networks, by name,
        aliases and short id."""
        with self._lock:
            nets = self._memberships(container_id, mode)
            own = [(e.ip, [e.hostname]) for n in nets for e in [n.endpoints[container_id]] if e.ip]
            peers = [(e.ip, [e.name, *e.aliases, e.container[:12]]) for n in nets if n.resolves_names
                     for e in n.running() if e.container != container_id]
            return own, peers

    def rename(self, container_id: str, new_name: str) -> None:
        """The container is now called `new_name` on every network it is a member of: its
        running peers resolve it by that name, and no longer by the old one."""
        with self._lock:
            nets = [n for n in self.state.networks.values() if container_id in n.endpoints]
            for net in nets:
                net.endpoints[container_id].name = new_name
            if nets:
                self.state.save()
            for net in nets:
                self._refresh_peers(net, container_id)

    def _refresh_peers(self, net: Network, changed: str) -> None:
        if net.resolves_names:
            for e in net.running():
                if e.container != changed:
                    self.files_changed(e.container)

    # -- repair --------------------------------------------------------------------------

    def repair(self, running: set[str]) -> None:
        """At engine start: release endpoints of containers that no longer run, and
        namespace files, veths and rules nothing in the state accounts for."""
        with self._lock:
            released = False
            for net in self.state.networks.values():
                for e in net.endpoints.values():
                    if e.ip and e.container not in running:
                        log.info("releasing %s's address %s on %s: the container ended", e.name, e.ip, net.name)
                        self._unplug(net, e)
                        released = True
            leftover = False
            if os.path.isdir(self.netns_dir):
                for name in os.listdir(self.netns_dir):
                    if name not in running:
                        netns.remove(self._netns_path(name))
                        leftover = True
            known = {e.veth for n in self.state.networks.values() for e in n.endpoints.values() if e.veth}
            stray = []
            # A veth is recorded before it is made, so strays can only be near a crash's traces
            # (or beside running containers): without any, netlink (pyroute2) is not needed.
            if released or leftover or known:
                try:
                    stray = [name for name in links.links(VETH_PREFIX) if name not in known]
                except NetworkError as exc:
                    log.warning("cannot list links for repair: %s", exc)
            for name in stray:
                log.info("removing stray veth %s", name)
                links.remove_link(name)
            if released:
                self.state.save()
            if released or os.path.exists(os.path.join(self.dir, NAT_MARKER)):
                self._apply_nat()

    # -- views ---------------------------------------------------------------------------

    def inspect(self, net: Network) -> dict[str, Any]:
        """Docker's network inspect shape."""
        config = []
        if net.subnet:
            entry = {"Subnet": net.subnet, "Gateway": net.gateway}
            if net.ip_range:
                entry["IPRange"] = net.ip_range
            config.append(entry)
        return {
            "Name": net.name,
            "Id": net.id,
            "Created": net.created,
            "Scope": "local",
            "Driver": net.driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": config},
            "Internal": net.internal,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {e.container: {"Name": e.name, "EndpointID": _endpoint_id(net, e), "MacAddress": e.mac,
                                         "IPv4Address": str(net.interface(e.ip)), "IPv6Address": ""}
                           for e in net.running()},
            "Options": {"com.docker.network.bridge.name": net.bridge} if net.bridge else {},
            "Labels": dict(net.labels),
        }

    def settings(self, container_id: str, mode: str, exposed: list[str]) -> dict[str, Any]:
        """The container's `NetworkSettings` (Docker's shape)."""
        with self._lock:
            nets = self._memberships(container_id, mode)
            path = self._netns_path(container_id)
            entries: dict[str, Any] = {}
            for net in nets:
                e = net.endpoints[container_id]
                entries[net.name] = {
                    "IPAMConfig": {"IPv4Address": e.wanted_ip} if e.wanted_ip else None, "Links": None,
                    "Aliases": list(e.aliases) or None, "MacAddress": e.mac, "NetworkID": net.id,
                    "EndpointID": _endpoint_id(net, e) if e.ip else "", "Gateway": net.gateway if e.ip else "",
                    "IPAddress": e.ip, "IPPrefixLen": net.interface(e.ip).network.prefixlen if e.ip else 0,
                    "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None,
                    "DNSNames": [e.name, *e.aliases, e.container[:12]] if net.resolves_names else None,
                }
            if mode in (NULL_MODE, "host"):
                net = self.get(mode)
                entries[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
                                 "NetworkID": net.id, "EndpointID": "", "Gateway": "", "IPAddress": "",
                                 "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                                 "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}
            primary = nets[0].endpoints[container_id] if nets and nets[0].name == mode else None
            published: dict[str, Any] = {key: None for key in exposed}
            for p in primary.ports if primary else []:
                published.setdefault(p.key, None)
                published[p.key] = [*(published[p.key] or []),
                                    {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)}]
            first = primary if primary is not None and primary.ip else None
            return {
                "Bridge": nets[0].bridge if first else "",
                "SandboxID": container_id if first else "",
                "SandboxKey": path if first else "",
                "HairpinMode": False,
                "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0,
                "Ports": published if first else {},
                "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None,
                "EndpointID": _endpoint_id(nets[0], first) if first else "",
                "Gateway": nets[0].gateway if first else "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "IPAddress": first.ip if first else "",
                "IPPrefixLen": nets[0].interface(first.ip).network.prefixlen if first else 0,
                "IPv6Gateway": "",
                "MacAddress": first.mac if first else "",
                "Networks": entries,
            }


def _endpoint_id(net: Network, endpoint: Endpoint) -> str:
    return hashlib.sha256(f"{net.id}/{endpoint.container}".encode()).hexdigest()


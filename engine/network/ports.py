"""Published ports: `-p [IP:][HOSTPORT:]PORT[/tcp|udp]` and `-P`, parsed and allocated.

Docker's syntax, ranges included (`8000-8001:80-81`). A binding with no host port gets
one from the kernel's ephemeral range when the container starts, as `-P` does for every
exposed port. Only IPv4 host addresses are supported (the bridge is IPv4); an IPv6 one
is refused by name rather than silently bound elsewhere.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import asdict, dataclass

from ..errors import Conflict, UsageError

PROTOCOLS = ("tcp", "udp")
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


@dataclass(frozen=True)
class PortBinding:
    """One published port; `host_ip` "" is every address, `host_port` 0 is "pick one"."""

    port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0

    @property
    def key(self) -> str:
        return f"{self.port}/{self.proto}"

    def to_json(self) -> dict:
        return asdict(self)

    def spec(self) -> str:
        """The `-p` spelling of this binding."""
        return f"{self.host_ip}:{self.host_port or ''}:{self.port}/{self.proto}"


def _port_range(text: str, what: str) -> list[int]:
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high) if sep else int(low)
    except ValueError:
        raise UsageError(f"invalid {what} {text!r} in a port mapping") from None
    if not (0 < first <= last <= 65535):
        raise UsageError(f"invalid {what} {text!r}: ports are 1-65535")
    return list(range(first, last + 1))


def split_proto(text: str) -> tuple[str, str]:
    port, _, proto = text.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise UsageError(f"invalid protocol {proto!r} in {text!r} (tcp or udp)")
    return port, proto


def parse_publish(spec: str) -> list[PortBinding]:
    """The bindings of one `-p` value."""
    if spec.startswith("["):
        raise UsageError(f"-p {spec}: IPv6 host addresses are not supported (strata's bridge is IPv4)")
    rest, proto = split_proto(spec)
    parts = rest.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise UsageError(f"invalid port mapping {spec!r}: use [IP:][HOSTPORT:]PORT[/tcp|udp]")
    host_ip, host_ports = "", ""
    if len(parts) == 3:
        host_ip, host_ports = parts[0], parts[1]
    elif len(parts) == 2:
        host_ports = parts[0]
    if host_ip:
        try:
            address = ipaddress.ip_address(host_ip)
        except ValueError:
            raise UsageError(f"invalid host address {host_ip!r} in port mapping {spec!r}") from None
        if address.version != 4:
            raise UsageError(f"-p {spec}: IPv6 host addresses are not supported (strata's bridge is IPv4)")
        host_ip = "" if address == ipaddress.IPv4Address("0.0.0.0") else str(address)
    ports = _port_range(parts[-1], "container port")
    if not host_ports:
        return [PortBinding(p, proto, host_ip, 0) for p in ports]
    hosts = _port_range(host_ports, "host port")
    if len(hosts) == 1 and len(ports) == 1:
        return [PortBinding(ports[0], proto, host_ip, hosts[0])]
    if len(hosts) != len(ports):
        raise UsageError(f"invalid port mapping {spec!r}: the host and container ranges differ in length")
    return [PortBinding(p, proto, host_ip, h) for p, h in zip(ports, hosts, strict=True)]


def parse_expose(spec: str) -> list[str]:
    """`--expose PORT[-PORT][/proto]` as `port/proto` keys."""
    port, proto = split_proto(spec)
    return [f"{p}/{proto}" for p in _port_range(port, "exposed port")]


def from_json(raw: dict) -> PortBinding:
    return PortBinding(int(raw["port"]), raw.get("proto", "tcp"), raw.get("host_ip", ""), int(raw.get("host_port", 0)))


def _ephemeral_range() -> tuple[int, int]:
    with open(EPHEMERAL_RANGE) as f:
        low, high = f.read().split()
    return int(low), int(high)


def _bindable(binding: PortBinding, port: int) -> bool:
    """Nothing on this host listens there (NAT would steal its traffic silently)."""
    kind = socket.SOCK_STREAM if binding.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock, contextlib.suppress(OSError):
        sock.bind((binding.host_ip or "0.0.0.0", port))
        return True
    return False


def _overlaps(a: PortBinding, b: PortBinding) -> bool:
    return a.proto == b.proto and a.host_port == b.host_port and (not a.host_ip or not b.host_ip
                                                                  or a.host_ip == b.host_ip)


def allocate(wanted: list[PortBinding], taken: list[PortBinding]) -> list[PortBinding]:
    """Concrete bindings for `wanted` given those other containers hold; Conflict if a host
    port is allocated already or in use on this host."""
    done: list[PortBinding] = []
    for binding in wanted:
        if binding.host_port:
            clash = next((t for t in [*taken, *done] if _overlaps(t, binding)), None)
            if clash is not None or not _bindable(binding, binding.host_port):
                raise Conflict(f"Bind for {binding.host_ip or '0.0.0.0'}:{binding.host_port} failed: "
                               "port is already allocated")
            done.append(binding)
            continue
        low, high = _ephemeral_range()
        for port in range(low, high + 1):
            candidate = PortBinding(binding.port, binding.proto, binding.host_ip, port)
            if not any(_overlaps(t, candidate) for t in [*taken, *done]) and _bindable(candidate, port):
                done.append(candidate)
                break
        else:
            raise Conflict(f"no free host port in {low}-{high} for {binding.key}")
    return done

"""Bridges and veth pairs through netlink (pyroute2), in the engine's network namespace.

Each container endpoint is a veth pair: the host end (`veth` + 8 hex characters of the
endpoint) enslaved to the network's bridge, the other end moved into the container's
namespace file, renamed `eth0` (`eth1`... for further networks), given its address, MAC
and, on the primary network, the default route through the bridge's gateway.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import NetworkError
from . import netns

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)

VETH_PREFIX = "veth"


@contextlib.contextmanager
def _ipr() -> Iterator[IPRoute]:
    """A netlink socket; pyroute2 is imported here, by the first command that needs a link
    (it is heavy, and `strata run` on none/host networks must not pay for it)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    ipr = IPRoute()
    try:
        yield ipr
    except NetlinkError as exc:
        raise NetworkError(f"netlink: {exc}") from None
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface) -> None:
    """The bridge `name` up with the gateway address; IPv4 forwarding on (containers reach
    out through NAT) and localnet routing on the bridge (published 127.0.0.1 ports)."""
    with _ipr() as ipr:
        index = _index(ipr, name)
        if index is None:
            ipr.link("add", ifname=name, kind="bridge")
            index = _index(ipr, name)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        if (str(gateway.ip), gateway.network.prefixlen) not in have:
            ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
        ipr.link("set", index=index, state="up")
    _sysctl("net.ipv4.ip_forward", "1")
    _sysctl(f"net.ipv4.conf.{name}.route_localnet", "1")


def remove_link(name: str) -> None:
    """Delete a bridge or a veth (both ends go); a missing one is fine."""
    with _ipr() as ipr:
        index = _index(ipr, name)
        if index is not None:
            ipr.link("del", index=index)


def links(prefix: str) -> list[str]:
    """Names of this namespace's links starting with `prefix`."""
    with _ipr() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n and n.startswith(prefix)]


def veth_name(endpoint_key: str) -> str:
    return VETH_PREFIX + hashlib.sha256(endpoint_key.encode()).hexdigest()[:8]


def mac_of(ip: ipaddress.IPv4Address) -> str:
    """Docker's MAC for an address: 02:42 and the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def add_endpoint(bridge: str, host_veth: str, netns_path: str, ifname: str, address: ipaddress.IPv4Interface,
                 gateway: ipaddress.IPv4Address | None) -> None:
    """A veth pair from `bridge` into the namespace file, configured inside as `ifname`."""
    peer = "p" + host_veth  # a temporary name while it is still in the engine's namespace
    with _ipr() as ipr:
        remove_link(host_veth)  # a leftover of a crash between create and record
        ipr.link("add", ifname=host_veth, kind="veth", peer=peer)
        try:
            master = _index(ipr, bridge)
            if master is None:
                raise NetworkError(f"bridge {bridge} is missing")
            host_index = _index(ipr, host_veth)
            ipr.link("set", index=host_index, master=master, state="up")
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=_index(ipr, peer), net_ns_fd=fd)
            finally:
                os.close(fd)
        except BaseException:
            remove_link(host_veth)
            raise

    def configure() -> None:
        with _ipr() as inner:
            index = _index(inner, peer)
            inner.link("set", index=index, ifname=ifname, address=mac_of(address.ip))
            inner.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
            inner.link("set", index=index, state="up")
            if gateway is not None:
                inner.route("add", dst="0.0.0.0/0", gateway=str(gateway))

    try:
        netns.run_in(netns_path, configure)
    except BaseException:
        remove_link(host_veth)
        raise

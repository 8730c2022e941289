"""The networkdriver's pure parts: `-p` parsing, address allocation, the nftables script, /etc files."""

from __future__ import annotations

import os

import pytest

from engine.containers import etcfiles
from engine.containers.hostconfig import HostConfig
from engine.errors import Conflict, UsageError
from engine.execdrivers.settings import Settings
from engine.network import nat
from engine.network.ports import PortBinding, parse_expose, parse_publish
from engine.network.state import Endpoint, Network, check_addressing


@pytest.mark.parametrize(("spec", "expected"), [
    ("80", [PortBinding(80, "tcp", "", 0)]),
    ("8080:80", [PortBinding(80, "tcp", "", 8080)]),
    ("127.0.0.1:18080:80", [PortBinding(80, "tcp", "127.0.0.1", 18080)]),
    ("127.0.0.1::53/udp", [PortBinding(53, "udp", "127.0.0.1", 0)]),
    ("0.0.0.0:1-2:81-82", [PortBinding(81, "tcp", "", 1), PortBinding(82, "tcp", "", 2)]),
])
def test_publish_specs_parse_as_docker_reads_them(spec: str, expected: list[PortBinding]) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec", ["", "80/sctp", "a:b:c:80", "99999", "1-3:80-81", "[::1]:80:80", "::1:80:80",
                                  "300.0.0.1:80:80", "80:"])
def test_bad_publish_specs_are_refused(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_publish(spec)


def test_expose_ranges() -> None:
    assert parse_expose("8000-8001/udp") == ["8000/udp", "8001/udp"]


def _net(**kw) -> Network:
    subnet, gateway, ip_range = check_addressing(kw.pop("subnet", "10.1.0.0/29"), "", kw.pop("ip_range", ""))
    return Network("n" * 64, "n1", "bridge", "now", subnet, gateway, ip_range, "br-x", **kw)


def test_allocation_skips_gateway_and_used_and_stays_in_the_range() -> None:
    net = _net()
    a, b = Endpoint("a" * 64, "a"), Endpoint("b" * 64, "b")
    net.endpoints = {a.container: a, b.container: b}
    a.ip = str(net.allocate(a).ip)
    b.ip = str(net.allocate(b).ip)
    assert (net.gateway, a.ip, b.ip) == ("10.1.0.1", "10.1.0.2", "10.1.0.3")
    ranged = _net(subnet="10.2.0.0/24", ip_range="10.2.0.128/30")
    first = Endpoint("c" * 64, "c")
    assert str(ranged.allocate(first).ip) == "10.2.0.129"


def test_a_full_subnet_and_a_taken_address_are_conflicts() -> None:
    net = _net(subnet="10.3.0.0/30")  # gateway .1, one address left
    e1, e2 = Endpoint("1" * 64, "one"), Endpoint("2" * 64, "two", wanted_ip="10.3.0.2")
    net.endpoints = {e1.container: e1, e2.container: e2}
    e1.ip = str(net.allocate(e1).ip)
    with pytest.raises(Conflict):
        net.allocate(e2)
    with pytest.raises(Conflict):
        net.allocate(Endpoint("3" * 64, "three"))


@pytest.mark.parametrize(("subnet", "gateway", "ip_range"), [("10.0.0.0/31", "", ""), ("10.0.0.0/24", "10.0.1.1", ""),
                                                             ("10.0.0.0/24", "", "10.0.1.0/28"), ("nope", "", "")])
def test_inconsistent_addressing_is_refused(subnet: str, gateway: str, ip_range: str) -> None:
    with pytest.raises(UsageError):
        check_addressing(subnet, gateway, ip_range)


def test_the_nft_script_dnats_published_ports_and_isolates_bridges() -> None:
    net = _net(subnet="10.4.0.0/24")
    other = Network("o" * 64, "n2", "bridge", "now", "10.5.0.0/24", "10.5.0.1", "", "br-y", internal=True)
    e = Endpoint("e" * 64, "web", ip="10.4.0.2", ports=[PortBinding(80, "tcp", "127.0.0.1", 18080)])
    f = Endpoint("f" * 64, "db", ip="10.5.0.2")
    net.endpoints, other.endpoints = {e.container: e}, {f.container: f}
    script = nat.render([net, other])
    assert script.startswith("table ip strata\ndelete table ip strata\n")
    assert "ip daddr 127.0.0.1 tcp dport 18080 dnat to 10.4.0.2:80" in script
    assert 'ip saddr 10.4.0.0/24 oifname != "br-x" masquerade' in script
    assert "10.5.0.0/24 oifname" not in script  # internal: no NAT out
    assert 'iifname "br-x" oifname { "br-y" } drop' in script
    assert nat.render([]) == "table ip strata\ndelete table ip strata\n"


def test_resolv_conf_drops_loopback_nameservers(tmp_path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("search example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n")
    assert etcfiles.host_resolv("bridge", str(host)) == ["search example", "nameserver 10.0.0.2"]
    host.write_text("nameserver 127.0.0.53\n")
    assert etcfiles.host_resolv("bridge", str(host)) == ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    assert etcfiles.host_resolv("host", str(host)) == ["nameserver 127.0.0.53"]


def test_hosts_file_is_rewritten_in_place(tmp_path) -> None:
    """The one writer of a container's /etc files: its address, its peers, --add-host; in place."""
    hc = HostConfig(Settings(), extra_hosts=[("db", "10.9.9.9")])
    etcfiles.write(str(tmp_path), etcfiles.contents("me", "", "net", hc, [("10.0.0.2", ["me"])],
                                                    [("10.0.0.3", ["peer", "p"])]))
    path = str(tmp_path / "hosts")
    inode = os.stat(path).st_ino
    text = open(path).read()
    assert "10.0.0.2\tme\n" in text and "10.0.0.3\tpeer p\n" in text and "10.9.9.9\tdb\n" in text
    assert "127.0.1.1" not in text
    etcfiles.write(str(tmp_path), etcfiles.contents("me", "", "net", hc, [("10.0.0.2", ["me"])], []))
    text = open(path).read()
    assert "10.0.0.2\tme\n" in text and "peer" not in text and os.stat(path).st_ino == inode

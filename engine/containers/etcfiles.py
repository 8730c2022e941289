"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname, as Docker writes them.

They live in the container's directory and are bind-mounted over the image's files, so
`--add-host`, `--dns*`, the hostname and, on a bridge network, the container's address and
its running peers' names show inside without touching the image or the container's layer
(they stay out of `diff` and `commit`). This module is their one writer: the container
store writes them at create and again whenever the networkdriver reports that a network's
members changed. They are rewritten in place: a bind mount holds the inode, so a renamed
new file would not be seen by a running container.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence

from .hostconfig import HostConfig

FILES = ("hosts", "resolv.conf", "hostname")
HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")  # fmt: skip
HOST_RESOLV = "/etc/resolv.conf"
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host has only loopback ones

Entries = Sequence[tuple[str, Sequence[str]]]  # (address, names) lines of /etc/hosts


def host_resolv(network: str, host_file: str = HOST_RESOLV) -> list[str]:
    """The host's resolv.conf lines; a private network namespace cannot reach loopback
    servers, so they are dropped there (Docker's public fallback when none is left)."""
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    if network == "host":
        return lines
    kept, servers = [], 0
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            try:
                if ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
            servers += 1
        kept.append(line)
    return kept if servers else [*kept, *(f"nameserver {s}" for s in FALLBACK_NAMESERVERS)]


def contents(hostname: str, domainname: str, network: str, hc: HostConfig, own: Entries = (),
             peers: Entries = ()) -> dict[str, str]:
    """The three files' text; `own` are the container's addresses on its bridge networks
    (none: 127.0.1.1 names it), `peers` the running members of its user-defined networks."""
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    if network == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            hosts = HOSTS
    elif own:
        hosts = HOSTS + "".join(f"{address}\t{names}\n" for address, _ in own[:1])
    else:
        hosts = HOSTS + f"127.0.1.1\t{names}\n"
    hosts += "".join(f"{address}\t{' '.join(peer)}\n" for address, peer in peers)
    hosts += "".join(f"{address}\t{host}\n" for host, address in hc.extra_hosts)
    if hc.dns or hc.dns_search or hc.dns_options:
        base = [line for line in host_resolv(network)
                if not (hc.dns and line.startswith("nameserver")) and not (hc.dns_search and line.startswith(
                    ("search", "domain"))) and not (hc.dns_options and line.startswith("options"))]
        resolv = [*base, *(f"nameserver {d}" for d in hc.dns)]
        if hc.dns_search:
            resolv.append("search " + " ".join(hc.dns_search))
        if hc.dns_options:
            resolv.append("options " + " ".join(hc.dns_options))
    else:
        resolv = host_resolv(network)
    return {"hosts": hosts, "resolv.conf": "\n".join(resolv) + "\n", "hostname": hostname + "\n"}


def write(directory: str, files: dict[str, str]) -> None:
    """Write each file in place (keeping its inode for the bind mount over the rootfs's)."""
    for name, text in files.items():
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            data = text.encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)

"""A bridged container's /etc/hosts, /etc/resolv.conf and /etc/hostname.

They are files in the container's directory, bind-mounted over the rootfs's (so they are
never part of `diff` or `commit`, as in Docker). On a user-defined network /etc/hosts
also names every running peer (name and aliases): that is how members reach each other
by name. Peers join and leave while a container runs, so the files are rewritten in
place (a bind mount holds the inode; a rename would not be seen).
"""

from __future__ import annotations

import ipaddress
import os

HOSTS, RESOLV, HOSTNAME = "hosts", "resolv.conf", "hostname"
TARGETS = {HOSTS: "/etc/hosts", RESOLV: "/etc/resolv.conf", HOSTNAME: "/etc/hostname"}
HOST_RESOLV = "/etc/resolv.conf"
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host has only local ones

_STATIC = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def hosts(own: list[tuple[str, list[str]]], peers: list[tuple[str, list[str]]]) -> str:
    """The hosts file: the static part, the container's own addresses, then its peers'."""
    lines = [f"{ip}\t{' '.join(names)}" for ip, names in [*own, *peers]]
    return _STATIC + "".join(line + "\n" for line in lines)


def resolv_conf(host_file: str = HOST_RESOLV) -> str:
    """The host's resolv.conf without loopback nameservers (unreachable from a container)."""
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
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
    if not servers:
        kept += [f"nameserver {s}" for s in FALLBACK_NAMESERVERS]
    return "\n".join(kept) + "\n"


def write(directory: str, name: str, text: str) -> str:
    """Write the file in place (keeping its inode for a bind mount); returns its path."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    return path

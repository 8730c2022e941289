"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname, as Docker writes them.

They live in the container's directory and are bind-mounted over the image's files, so
`--add-host`, `--dns*` and the hostname show inside without touching the image or the
container's layer (they stay out of `diff` and `commit`).
"""

from __future__ import annotations

import ipaddress
import os

from .hostconfig import HostConfig

FILES = ("hosts", "resolv.conf", "hostname")
HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")  # fmt: skip
HOST_RESOLV = "/etc/resolv.conf"


def _host_resolv(network: str) -> list[str]:
    """The host's resolv.conf lines; a private network namespace cannot reach loopback servers."""
    try:
        with open(HOST_RESOLV) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    if network == "host":
        return lines
    kept = []
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            try:
                if ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
        kept.append(line)
    return kept


def contents(hostname: str, domainname: str, network: str, hc: HostConfig) -> dict[str, str]:
    """The three files' text."""
    if network == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            hosts = HOSTS
    else:
        names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
        hosts = HOSTS + f"127.0.1.1\t{names}\n"
    hosts += "".join(f"{address}\t{host}\n" for host, address in hc.extra_hosts)
    if hc.dns or hc.dns_search or hc.dns_options:
        base = [line for line in _host_resolv(network)
                if not (hc.dns and line.startswith("nameserver")) and not (hc.dns_search and line.startswith(
                    ("search", "domain"))) and not (hc.dns_options and line.startswith("options"))]
        resolv = [*base, *(f"nameserver {d}" for d in hc.dns)]
        if hc.dns_search:
            resolv.append("search " + " ".join(hc.dns_search))
        if hc.dns_options:
            resolv.append("options " + " ".join(hc.dns_options))
    else:
        resolv = _host_resolv(network)
    return {"hosts": hosts, "resolv.conf": "\n".join(resolv) + "\n", "hostname": hostname + "\n"}


def write(directory: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = os.path.join(directory, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.chmod(path + ".tmp", 0o644)
        os.rename(path + ".tmp", path)

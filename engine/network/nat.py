"""Published ports, outbound NAT and network isolation as one nftables table.

The whole `ip strata` table is rendered from the networks' state and replaced in one
`nft -f` transaction after every change, so the kernel's rules are always exactly what
the state says: a crash cannot leave a half-applied change, and the repair at start is
the same call. Rules:

- `ports` (jumped to from prerouting and output for local destination addresses):
  DNAT of each published host address and port to the container's address and port;
- postrouting: masquerade what containers send out of their bridge (not on internal
  networks), and traffic that reaches a bridge from 127.0.0.0/8 (a published port used
  through localhost; the bridge has route_localnet on) or from the container itself
  (hairpin through its own published port);
- forward: traffic between two strata bridges is dropped (networks are isolated), and
  internal networks forward nothing beyond their bridge.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from ..errors import NetworkError
from .state import BRIDGE, Network

log = logging.getLogger(__name__)

TABLE = "strata"


def _q(name: str) -> str:
    return f'"{name}"'


def render(networks: list[Network]) -> str:
    """The `nft -f` script that replaces the table (or only removes it: no bridge networks)."""
    bridges = [n for n in networks if n.driver == BRIDGE and n.running()]
    script = [f"table ip {TABLE}", f"delete table ip {TABLE}"]
    if not bridges:
        return "\n".join(script) + "\n"
    dnat, post, forward = [], [], []
    names = [n.bridge for n in bridges]
    for n in bridges:
        br = _q(n.bridge)
        if not n.internal:
            post.append(f"ip saddr {n.subnet} oifname != {br} masquerade")
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        others = [_q(b) for b in names if b != n.bridge]
        if others:
            forward.append(f"iifname {br} oifname {{ {', '.join(others)} }} drop")
        if n.internal:
            forward.append(f"iifname {br} oifname != {br} drop")
            forward.append(f"oifname {br} iifname != {br} drop")
        for e in n.running():
            ip = e.ip.split("/")[0]
            for p in e.ports:
                match = f"ip daddr {p.host_ip} " if p.host_ip else ""
                dnat.append(f"{match}{p.proto} dport {p.host_port} dnat to {ip}:{p.port}")
                post.append(f"oifname {br} ip saddr {ip} ip daddr {ip} {p.proto} dport {p.port} masquerade")
    script += [
        f"table ip {TABLE} {{",
        "  chain ports {",
        *[f"    {r}" for r in dnat],
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump ports",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump ports",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        *[f"    {r}" for r in post],
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        *[f"    {r}" for r in forward],
        "  }",
        "}",
    ]
    return "\n".join(script) + "\n"


def apply(networks: list[Network]) -> None:
    """Make the kernel's `ip strata` table what `networks` say, in one transaction."""
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        raise NetworkError("nftables' nft is not installed: bridge networks need it (apt-get install nftables)")
    script = render(networks)
    result = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True)
    if result.returncode != 0:
        raise NetworkError(f"nft refused the strata table: {result.stderr.strip()}\n{script}")
    log.debug("nft table %s:\n%s", TABLE, script)

"""The network jobs: network_ls, network_create, network_rm, network_inspect,
network_connect, network_disconnect, network_prune, and `port`."""

from __future__ import annotations

from ..errors import UsageError
from ..job import Job
from ..jobspec import JSON, JobTable, Option
from . import ports
from .service import Networks
from .state import BRIDGE, Network

jobs = JobTable()
FILTERS = ("name", "id", "driver", "type")


def _networks(job: Job) -> Networks:
    return job.engine.network


def _filters(raw: list[str]) -> list[tuple[str, str]]:
    found = []
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTERS:
            raise UsageError(f"invalid filter {item!r} (KEY=VALUE, keys: {', '.join(FILTERS)})")
        if key == "type" and value not in ("builtin", "custom"):
            raise UsageError(f"invalid filter {item!r}: type is builtin or custom")
        found.append((key, value))
    return found


def _matches(net: Network, filters: list[tuple[str, str]]) -> bool:
    """Docker's semantics: values of one key are alternatives, different keys must all hold."""
    by_key: dict[str, list[str]] = {}
    for key, value in filters:
        by_key.setdefault(key, []).append(value)
    tests = {"name": lambda v: v in net.name, "id": lambda v: net.id.startswith(v),
             "driver": lambda v: net.driver == v, "type": lambda v: net.builtin == (v == "builtin")}
    return all(any(tests[key](v) for v in values) for key, values in by_key.items())


@jobs.job("network_ls", help="list networks", options={
    "quiet": Option(bool, "ids only", ("-q", "--quiet")),
    "filter": Option(list, "KEY=VALUE: name, id, driver, type (builtin|custom)", ("-f", "--filter")),
    "json": JSON})
def network_ls(job: Job) -> int:
    """`network_ls`: every network (filter: name, id, driver, type)."""
    service = _networks(job)
    found = [n for n in service.list() if _matches(n, _filters(job.options["filter"]))]
    if job.options["json"]:
        job.write_json([service.inspect(n) for n in found])
    elif job.options["quiet"]:
        job.write("".join(n.id[:12] + "\n" for n in found))
    else:
        rows = [("NETWORK ID", "NAME", "DRIVER", "SCOPE"), *((n.id[:12], n.name, n.driver, "local") for n in found)]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        job.write("".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
                          for r in rows))
    return 0


@jobs.job("network_create", args="NAME", help="create a bridge network", options={
    "network_driver": Option(str, "network driver (bridge)", ("-d", "--driver"), BRIDGE),
    "subnet": Option(str, "IPv4 subnet in CIDR form (default: a free 172.x.0.0/16)", ("--subnet",), ""),
    "gateway": Option(str, "the bridge's address in the subnet (default: the first)", ("--gateway",), ""),
    "ip_range": Option(str, "allocate container addresses from this sub-range", ("--ip-range",), ""),
    "internal": Option(bool, "no traffic beyond the bridge (no NAT, no routing out)", ("--internal",)),
    "label": Option(list, "KEY=VALUE metadata", ("--label",))})
def network_create(job: Job) -> int:
    """`network_create NAME`: prints the new network's id."""
    o = job.options
    labels = {}
    for item in o["label"]:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label {item!r} (KEY=VALUE)")
        labels[key] = value
    net = _networks(job).create(job.args[0], driver=o["network_driver"], subnet=o["subnet"], gateway=o["gateway"],
                                ip_range=o["ip_range"], internal=o["internal"], labels=labels)
    job.write(net.id + "\n")
    return 0


@jobs.job("network_rm", args="NETWORK...", help="remove networks")
def network_rm(job: Job) -> int:
    """`network_rm NETWORK...`: a network with members is refused."""
    for ref in job.args:
        _networks(job).remove(ref)
        job.write(ref + "\n")
    return 0


@jobs.job("network_prune", help="remove every user-defined network without containers")
def network_prune(job: Job) -> int:
    """`network_prune`: prints the removed networks' names."""
    job.write("".join(name + "\n" for name in _networks(job).prune()))
    return 0


@jobs.job("network_inspect", args="NETWORK...", help="show networks as JSON")
def network_inspect(job: Job) -> int:
    """`network_inspect NETWORK...`"""
    service = _networks(job)
    job.write_json([service.inspect(service.get(ref)) for ref in job.args])
    return 0


@jobs.job("network_connect", args="NETWORK CONTAINER", help="connect a container to a network", options={
    "alias": Option(list, "another name peers resolve", ("--alias",)),
    "ip": Option(str, "the container's IPv4 address on this network", ("--ip",), "")})
def network_connect(job: Job) -> int:
    """`network_connect NETWORK CONTAINER`: a running container gets an interface at once."""
    c = job.engine.containers.refresh(job.engine.containers.get(job.args[1]))
    _networks(job).connect(job.args[0], c.id, c.name, c.hostname, c.network, job.options["alias"], job.options["ip"])
    return 0


@jobs.job("network_disconnect", args="NETWORK CONTAINER", help="disconnect a container from a network")
def network_disconnect(job: Job) -> int:
    """`network_disconnect NETWORK CONTAINER`"""
    c = job.engine.containers.refresh(job.engine.containers.get(job.args[1]))
    _networks(job).disconnect(job.args[0], c.id, c.network)
    return 0


@jobs.job("port", args="CONTAINER [PORT[/PROTO]]", help="list a container's published ports", options={
    "json": JSON})
def port(job: Job) -> int:
    """`port CONTAINER [PORT[/PROTO]]`: `80/tcp -> 127.0.0.1:18080` lines, as `docker port`."""
    store = job.engine.containers
    c = store.refresh(store.get(job.args[0]))
    published = _networks(job).settings(c.id, c.network, c.exposed)["Ports"]
    if len(job.args) > 1:
        number, proto = ports.split_proto(job.args[1])
        key = f"{number}/{proto}"
        if not published.get(key):
            raise UsageError(f"no public port '{key}' published for {c.name}")
        published = {key: published[key]}
    if job.options["json"]:
        job.write_json(published)
        return 0
    for key, bindings in sorted(published.items()):
        for b in bindings or []:
            job.write(f"{key} -> {b['HostIp']}:{b['HostPort']}\n" if len(job.args) == 1
                      else f"{b['HostIp']}:{b['HostPort']}\n")
    return 0

"""Network endpoints: list, inspect, create, remove, connect, disconnect, prune."""

from __future__ import annotations

from typing import Any

from ...engine import Engine
from .. import jobio
from ..http import ApiError, Reply, Request, Router

# Fields of a create body strata honours; any other set field is refused by name.
CREATE_FIELDS = {"Name", "Driver", "IPAM", "Internal", "Labels", "CheckDuplicate", "Attachable", "Options",
                 "EnableIPv6", "Ingress", "Scope", "ConfigOnly", "ConfigFrom"}


def endpoint_config(endpoint: dict[str, Any]) -> tuple[list[str], str]:
    """(aliases, IPv4 address) of an EndpointConfig; any other field set is refused."""
    unknown = sorted(k for k, v in endpoint.items() if v and k not in ("Aliases", "IPAMConfig", "NetworkID"))
    if unknown:
        raise ApiError(400, f"EndpointConfig field {unknown[0]} is not supported")
    ipam = endpoint.get("IPAMConfig") or {}
    if ipam.get("IPv6Address") or ipam.get("LinkLocalIPs"):
        raise ApiError(400, "IPv6 and link-local addresses are not supported (strata's bridge is IPv4)")
    return list(endpoint.get("Aliases") or []), ipam.get("IPv4Address") or ""


def _create_options(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - CREATE_FIELDS)
    for name, value in (("EnableIPv6", "IPv6"), ("Attachable", "attachable"), ("Ingress", "ingress"),
                        ("ConfigOnly", "config-only"), ("ConfigFrom", "config-from")):
        if body.get(name):
            raise ApiError(400, f"{name}: {value} networks are not supported by strata's networkdriver")
    if body.get("Options"):
        raise ApiError(400, f"driver option {sorted(body['Options'])[0]!r} is not supported")
    if body.get("Scope") not in (None, "", "local"):
        raise ApiError(400, f"network scope {body['Scope']!r} is not supported (local)")
    if unknown:
        raise ApiError(400, f"network create field {unknown[0]} is not supported")
    ipam = body.get("IPAM") or {}
    if ipam.get("Driver") not in (None, "", "default") or ipam.get("Options"):
        raise ApiError(400, "only the default IPAM driver without options is supported")
    configs = ipam.get("Config") or []
    if len(configs) > 1:
        raise ApiError(400, "one IPAM config (one IPv4 subnet) per network")
    config = configs[0] if configs else {}
    if config.get("AuxiliaryAddresses"):
        raise ApiError(400, "IPAM AuxiliaryAddresses are not supported")
    return {"network_driver": body.get("Driver") or "bridge", "subnet": config.get("Subnet") or "",
            "gateway": config.get("Gateway") or "", "ip_range": config.get("IPRange") or "",
            "internal": bool(body.get("Internal")),
            "label": [f"{k}={v}" for k, v in (body.get("Labels") or {}).items()]}


def add_routes(router: Router, engine: Engine) -> None:
    @router.route("GET", "/networks")
    def list_(req: Request) -> Reply:
        job = jobio.run(engine, "network_ls", options={"filter": req.filters(), "json": True})
        return Reply(200, job.json())

    @router.route("GET", "/networks/{id}")
    def inspect(req: Request) -> Reply:
        return Reply(200, jobio.run(engine, "network_inspect", req.params["id"]).json()[0])

    @router.route("POST", "/networks/create")
    def create(req: Request) -> Reply:
        body = req.json()
        if not isinstance(body, dict) or not body.get("Name"):
            raise ApiError(400, "the network config needs a Name")
        job = jobio.run(engine, "network_create", str(body["Name"]), options=_create_options(body))
        return Reply(201, {"Id": job.stdout.getvalue().decode().strip(), "Warning": ""})

    @router.route("DELETE", "/networks/{id}")
    def remove(req: Request) -> Reply:
        jobio.run(engine, "network_rm", req.params["id"])
        return Reply(204, None)

    @router.route("POST", "/networks/prune")
    def prune(req: Request) -> Reply:
        if req.filters():
            raise ApiError(400, "network prune filters are not supported")
        names = jobio.run(engine, "network_prune").stdout.getvalue().decode().split()
        return Reply(200, {"NetworksDeleted": names})

    @router.route("POST", "/networks/{id}/connect")
    def connect(req: Request) -> Reply:
        body = req.json()
        if not isinstance(body, dict) or not body.get("Container"):
            raise ApiError(400, "connect needs a Container")
        aliases, ip = endpoint_config(body.get("EndpointConfig") or {})
        jobio.run(engine, "network_connect", req.params["id"], str(body["Container"]),
                  options={"alias": aliases, "ip": ip})
        return Reply(200, None)

    @router.route("POST", "/networks/{id}/disconnect")
    def disconnect(req: Request) -> Reply:
        body = req.json()
        if not isinstance(body, dict) or not body.get("Container"):
            raise ApiError(400, "disconnect needs a Container")
        if body.get("Force"):
            raise ApiError(400, "Force: strata disconnects only what it can disconnect cleanly (no force)")
        jobio.run(engine, "network_disconnect", req.params["id"], str(body["Container"]))
        return Reply(200, None)

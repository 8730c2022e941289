"""The body of `POST /containers/create` read into `create` job options, every field judged.

Each field of Config and HostConfig is either carried to the job (which honours it) or,
when it asks for something strata does not do, refused with 400 naming the field. A field
at its zero value (what clients send for "not asked") is accepted: it asks for nothing.
"""

from __future__ import annotations

from typing import Any

from ..containers import args as containerargs
from .http import ApiError
from .routes.networks import endpoint_config

BASIC_CONFIG = ("Image", "Cmd", "Env", "WorkingDir", "User", "Hostname")
OUTPUT_ONLY = ("AttachStdout", "AttachStderr")  # attach decides what streams; create records nothing
INTERACTIVE = ("Tty", "OpenStdin", "AttachStdin", "StdinOnce")  # -t, -i (AttachStdin: as OpenStdin's client)
# Fields whose non-zero values strata accepts, and which: they ask for what strata does.
ACCEPTED_VALUES: dict[str, tuple[Any, ...]] = {
    "HostConfig.IpcMode": ("private", "shareable"),
    "HostConfig.CgroupnsMode": ("host",),  # cgroup v1 hosts: containers see the host's cgroup namespace
    "HostConfig.Isolation": ("default",),
    "HostConfig.VolumeDriver": ("local",),
    "HostConfig.MemorySwappiness": (-1,),
    "HostConfig.LogConfig.Type": ("json-file",),
}
# Maps keyed by names (a path, a port): any entry asks for something, even with an empty value.
NAME_MAPS = ("Config.Volumes", "HostConfig.StorageOpt", "HostConfig.Annotations")
REASONS = {
    "HostConfig.PidMode": "containers always get a pid namespace of their own",
    "HostConfig.IpcMode": "containers always get an IPC namespace of their own",
    "HostConfig.UTSMode": "containers always get a UTS namespace of their own",
    "Config.Volumes": "anonymous volumes are not supported; name one (-v NAME:/path)",
}


def zero(value: Any) -> bool:
    """A value at its zero (null, "", 0, false, or made only of those): it asks for nothing."""
    if isinstance(value, dict):
        return all(zero(v) for v in value.values())
    if isinstance(value, list):
        return all(zero(v) for v in value)
    return value in (None, "", 0, False)


def _refuse(field: str, value: Any) -> None:
    reason = REASONS.get(field, "strata does not support it")
    raise ApiError(400, f"{field}={value!r} is not supported: {reason}")


def _judge(prefix: str, section: dict[str, Any], handled: set[str]) -> None:
    """Refuse every field of `section` that is neither handled nor zero nor an accepted value."""
    for name, value in section.items():
        field = f"{prefix}.{name}"
        if name in handled or (zero(value) and not (field in NAME_MAPS and value)):
            continue
        if isinstance(value, dict) and any(k.startswith(field + ".") for k in ACCEPTED_VALUES):
            _judge(field, value, set())
            continue
        if value in ACCEPTED_VALUES.get(field, ()):
            continue
        _refuse(field, value)


def _network(body: dict[str, Any], host_config: dict[str, Any]) -> dict[str, Any]:
    """The create job's network options from NetworkMode, PortBindings, PublishAllPorts,
    ExposedPorts and the mode's NetworkingConfig endpoint (aliases, IPv4 address); the
    networkdriver judges the mode (container: is refused there)."""
    mode = host_config.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise ApiError(400, "HostConfig.NetworkMode must be a string")
    if body.get("NetworkDisabled"):
        if mode not in ("default", "none"):
            raise ApiError(400, f"Config.NetworkDisabled contradicts HostConfig.NetworkMode={mode}")
        mode = "none"
    publish = []
    for key, bindings in (host_config.get("PortBindings") or {}).items():
        for b in bindings or [{}]:
            publish.append(f"{(b or {}).get('HostIp') or ''}:{(b or {}).get('HostPort') or ''}:{key}")
    endpoints = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
    if not isinstance(endpoints, dict):
        raise ApiError(400, "NetworkingConfig.EndpointsConfig must be an object")
    if len(endpoints) > 1:
        raise ApiError(400, "a container is created on one network; connect it to others afterwards")
    aliases, ip = endpoint_config(endpoints.get(mode) or next(iter(endpoints.values()), None) or {})
    return {"network": mode, "publish": publish, "publish_all": bool(host_config.get("PublishAllPorts")),
            "expose": list(body.get("ExposedPorts") or {}), "network_alias": aliases, "ip": ip}


def _mask_option(host_config: dict[str, Any]) -> list[str]:
    """MaskedPaths/ReadonlyPaths: empty lists are `--security-opt systempaths=unconfined`."""
    masked, readonly = host_config.get("MaskedPaths"), host_config.get("ReadonlyPaths")
    if masked is None and readonly is None:
        return []
    if masked == [] and readonly == []:
        return ["systempaths=unconfined"]
    raise ApiError(400, "HostConfig.MaskedPaths/ReadonlyPaths: only both empty (systempaths=unconfined) "
                   "is supported")


def restart_policy(policy: Any) -> str:
    """HostConfig.RestartPolicy as `--restart` spells it (the create job judges it)."""
    if not isinstance(policy, dict):
        raise ApiError(400, "HostConfig.RestartPolicy must be an object")
    name = policy.get("Name") or "no"
    count = policy.get("MaximumRetryCount") or 0
    if not isinstance(name, str) or not isinstance(count, int):
        raise ApiError(400, "HostConfig.RestartPolicy needs a string Name and an integer MaximumRetryCount")
    return f"{name}:{count}" if name == "on-failure" and count else name


def options(body: Any, name: str) -> tuple[str, list[str], dict[str, Any]]:
    """(image, command, create options) of a create request body; a field strata cannot honour is a 400."""
    if not isinstance(body, dict) or not body.get("Image"):
        raise ApiError(400, "the container config needs an Image")
    host_config = body.get("HostConfig") or {}
    if not isinstance(host_config, dict):
        raise ApiError(400, "HostConfig must be an object")
    api_fields = {path.split(".")[1] for path, _ in containerargs.API_FIELDS.values()}
    top = {"HostConfig", "NetworkingConfig", *BASIC_CONFIG, *OUTPUT_ONLY, *INTERACTIVE, "NetworkDisabled",
           "ExposedPorts"}
    _judge("Config", body, top | api_fields)
    _judge("HostConfig", host_config, api_fields | {"NetworkMode", "AutoRemove", "MaskedPaths", "ReadonlyPaths",
                                                    "PortBindings", "PublishAllPorts", "RestartPolicy",
                                                    "ConsoleSize"})
    console = host_config.get("ConsoleSize")
    if not zero(console) and not body.get("Tty"):
        raise ApiError(400, "HostConfig.ConsoleSize is the size of a terminal: it needs Config.Tty")
    if not zero(console) and not (isinstance(console, list) and len(console) == 2
                                   and all(isinstance(n, int) and 0 < n < 65536 for n in console)):
        raise ApiError(400, "HostConfig.ConsoleSize must be [rows, columns] of positive integers")
    network = _network(body, host_config)
    cmd, env = body.get("Cmd") or [], body.get("Env") or []
    for field, value in (("Cmd", cmd), ("Env", env)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ApiError(400, f"Config.{field} must be a list of strings")
    for field in ("WorkingDir", "User", "Hostname"):
        if not isinstance(body.get(field) or "", str):
            raise ApiError(400, f"Config.{field} must be a string")
    try:
        extra = containerargs.from_api(body, host_config)
    except (containerargs.UsageError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ApiError(400, f"invalid create request: {exc}") from None
    extra["security_opt"] = [*extra.get("security_opt", []), *_mask_option(host_config)]
    values = {
        "name": name,
        "env": list(env),
        "workdir": body.get("WorkingDir") or "",
        "user": body.get("User") or "",
        "hostname": body.get("Hostname") or "",
        **network,
        "rm": bool(host_config.get("AutoRemove")),
        "tty": bool(body.get("Tty")),
        "interactive": bool(body.get("OpenStdin")),
        "stdin_once": bool(body.get("StdinOnce")),
        "restart": restart_policy(host_config.get("RestartPolicy") or {}),
        "console_size": [] if zero(console) else [str(n) for n in console],
        **extra,
    }
    return str(body["Image"]), [str(a) for a in cmd], values

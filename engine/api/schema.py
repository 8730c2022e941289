"""The JSON types of request bodies, checked before a route reads them.

A client that sends `"WorkingDir": 5` or `HostConfig` as a list gets a 400 naming the
field and the type Docker's API declares for it, instead of a Python exception from deep
inside a route. Only types are checked here; whether strata honours a field's value is
the route's business. `null` is accepted for every field, as Docker's decoder does.
"""

from __future__ import annotations

from typing import Any

from .http import ApiError

# A type spec: "string", "integer", "boolean", "object", "list" (of anything),
# "strings" (a list of strings), "string map" (an object of strings).
Spec = str

CONTAINER_CONFIG: dict[str, Spec] = {
    "Hostname": "string", "Domainname": "string", "User": "string", "Image": "string", "WorkingDir": "string",
    "StopSignal": "string", "MacAddress": "string", "Shell": "strings",
    "AttachStdin": "boolean", "AttachStdout": "boolean", "AttachStderr": "boolean", "Tty": "boolean",
    "OpenStdin": "boolean", "StdinOnce": "boolean", "NetworkDisabled": "boolean", "ArgsEscaped": "boolean",
    "Env": "strings", "Cmd": "strings", "Entrypoint": "strings", "OnBuild": "strings",
    "Labels": "string map", "Volumes": "object", "ExposedPorts": "object", "Healthcheck": "object",
    "StopTimeout": "integer", "HostConfig": "object", "NetworkingConfig": "object",
}
HOST_CONFIG: dict[str, Spec] = {
    "Binds": "strings", "Mounts": "list", "Tmpfs": "string map", "ReadonlyRootfs": "boolean",
    "Privileged": "boolean", "CapAdd": "strings", "CapDrop": "strings", "Devices": "list",
    "Memory": "integer", "MemorySwap": "integer", "MemoryReservation": "integer", "NanoCpus": "integer",
    "CpuShares": "integer", "CpuPeriod": "integer", "CpuQuota": "integer", "CpusetCpus": "string",
    "CpusetMems": "string", "PidsLimit": "integer", "Ulimits": "list", "Sysctls": "string map",
    "SecurityOpt": "strings", "GroupAdd": "strings", "ExtraHosts": "strings", "Dns": "strings",
    "DnsOptions": "strings", "DnsSearch": "strings", "Init": "boolean", "AutoRemove": "boolean",
    "OomKillDisable": "boolean", "NetworkMode": "string", "PidMode": "string", "IpcMode": "string",
    "UTSMode": "string", "UsernsMode": "string", "CgroupnsMode": "string", "Runtime": "string",
    "PortBindings": "object", "RestartPolicy": "object", "LogConfig": "object", "PublishAllPorts": "boolean",
    "VolumesFrom": "strings", "Links": "strings", "ShmSize": "integer", "Isolation": "string",
}
UPDATE_CONFIG: dict[str, Spec] = {name: HOST_CONFIG[name] for name in (
    "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota", "CpusetCpus",
    "PidsLimit", "RestartPolicy")}
EXEC_CONFIG: dict[str, Spec] = {
    "User": "string", "Privileged": "boolean", "Tty": "boolean", "ConsoleSize": "list", "AttachStdin": "boolean",
    "AttachStdout": "boolean", "AttachStderr": "boolean", "Detach": "boolean", "DetachKeys": "string",
    "Env": "strings", "WorkingDir": "string", "Cmd": "strings",
}
_PYTHON = {"string": str, "integer": int, "boolean": bool, "object": dict, "list": list}
_WORDS = {"string": "a string", "integer": "an integer", "boolean": "a boolean", "object": "an object",
          "list": "a list", "strings": "a list of strings", "string map": "an object of strings"}


def _fits(value: Any, spec: Spec) -> bool:
    if value is None:
        return True
    if spec == "strings":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if spec == "string map":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if spec == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _PYTHON[spec])


def _describe(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def check(body: Any, fields: dict[str, Spec], where: str) -> None:
    """Raise a 400 for the first field of `body` whose JSON type is not `fields`' (body: an object)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"{where} must be a JSON object, got {_describe(body)}")
    for name, spec in fields.items():
        if name in body and not _fits(body[name], spec):
            raise ApiError(400, f"{where}: {name} must be {_WORDS[spec]}, got {_describe(body[name])}")


def check_container_config(body: Any) -> None:
    """A container create request: Config's fields, then HostConfig's."""
    check(body, CONTAINER_CONFIG, "container config")
    if body.get("HostConfig") is not None:
        check(body["HostConfig"], HOST_CONFIG, "HostConfig")

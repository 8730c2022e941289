"""Dockerfile instructions applied to an image config: `commit -c` and `import -c` (`changes`).

Docker takes the instructions that only change the config -- CMD, ENTRYPOINT, ENV, EXPOSE,
LABEL, ONBUILD, USER, VOLUME, WORKDIR -- and refuses every other one by name (RUN, COPY...
would need a build; HEALTHCHECK needs health checks, which strata does not run). The forms
are the Dockerfile's: JSON (`CMD ["a", "b"]`) or shell (`CMD a b` is `/bin/sh -c "a b"`),
`KEY=VALUE` pairs (quoted as a shell quotes) or the legacy `ENV KEY VALUE`, and `$VAR` /
`${VAR}` of the config's environment in ENV, LABEL, EXPOSE, USER, VOLUME and WORKDIR.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import shlex
from collections.abc import Callable
from typing import Any

from ..errors import UsageError

log = logging.getLogger(__name__)

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR")
_NOT_ONBUILD = ("ONBUILD", "FROM", "MAINTAINER")  # what ONBUILD may not trigger (Docker's rule)
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def apply(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """`config` (an image's `config` object) with the instructions of `changes` applied, in order;
    a change that is not one of SUPPORTED, or malformed, is a UsageError naming it."""
    out = json.loads(json.dumps(config or {}))
    cmd_set = False  # a CMD among the changes survives a later ENTRYPOINT (the builder's rule)
    for change in changes:
        for line in _lines(change):
            word, _, rest = line.partition(" ")
            name = word.upper()
            if name not in SUPPORTED:
                raise UsageError(f"{name} is not a valid change command (commit and import take "
                                 f"{', '.join(SUPPORTED)})")
            rest = rest.strip()
            if not rest:
                raise UsageError(f"{name} needs an argument: {line!r}")
            cmd = out.get("Cmd")
            _APPLY[name](out, rest)
            cmd_set = cmd_set or name == "CMD"
            if name == "ENTRYPOINT" and cmd_set:
                out["Cmd"] = cmd
    return out


def _lines(change: str) -> list[str]:
    """The instructions of one change: lines, a trailing backslash joining the next, # comments skipped."""
    joined = re.sub(r"\\\r?\n", " ", change)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _expand(text: str, config: dict[str, Any]) -> str:
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def _json_list(text: str) -> list[str] | None:
    """The JSON form of an instruction's argument, or None for the shell form."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None  # Docker too takes a malformed JSON array as the shell form
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _command(text: str) -> list[str]:
    return _json_list(text) or ["/bin/sh", "-c", text]


def _pairs(name: str, text: str, config: dict[str, Any]) -> list[tuple[str, str]]:
    """`K=V K2="V 2"`, or the legacy `K V...` (one pair: the rest of the line is the value)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"{name} {text!r}: {exc}") from None
    if "=" not in words[0]:
        key, _, value = text.partition(" ")
        if not value.strip():
            raise UsageError(f"{name} {text!r}: give KEY=VALUE (or KEY VALUE)")
        return [(key, _expand(value.strip(), config))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UsageError(f"{name} {text!r}: {word!r} is not KEY=VALUE")
        pairs.append((key, _expand(value, config)))
    return pairs


def _cmd(config: dict[str, Any], text: str) -> None:
    config["Cmd"] = _command(text)


def _entrypoint(config: dict[str, Any], text: str) -> None:
    config["Entrypoint"] = _command(text)
    config["Cmd"] = None  # as a Dockerfile's ENTRYPOINT does: the image's CMD no longer applies


def _env(config: dict[str, Any], text: str) -> None:
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    for key, value in _pairs("ENV", text, config):
        env[key] = value
    config["Env"] = [f"{k}={v}" for k, v in env.items()]


def _label(config: dict[str, Any], text: str) -> None:
    config["Labels"] = {**(config.get("Labels") or {}), **dict(_pairs("LABEL", text, config))}


def _expose(config: dict[str, Any], text: str) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for word in _expand(text, config).split():
        port, _, proto = word.partition("/")
        low, _, high = port.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or proto not in ("", "tcp", "udp", "sctp"):
            raise UsageError(f"EXPOSE {text!r}: {word!r} is not PORT[-PORT][/tcp|udp|sctp]")
        for number in range(int(low), int(high or low) + 1):
            if not 0 < number < 65536:
                raise UsageError(f"EXPOSE {text!r}: port {number} is out of range")
            ports[f"{number}/{proto or 'tcp'}"] = {}
    config["ExposedPorts"] = ports


def _onbuild(config: dict[str, Any], text: str) -> None:
    trigger = text.split()[0].upper()
    if trigger in _NOT_ONBUILD:
        raise UsageError(f"ONBUILD {trigger} is not allowed")
    config["OnBuild"] = [*(config.get("OnBuild") or []), text]


def _user(config: dict[str, Any], text: str) -> None:
    config["User"] = _expand(text, config)


def _volume(config: dict[str, Any], text: str) -> None:
    paths = _json_list(text) or _expand(text, config).split()
    if not all(paths):
        raise UsageError(f"VOLUME {text!r}: a volume path must not be empty")
    config["Volumes"] = {**(config.get("Volumes") or {}), **{path: {} for path in paths}}


def _workdir(config: dict[str, Any], text: str) -> None:
    # a relative WORKDIR is relative to the one before, as in a Dockerfile
    config["WorkingDir"] = posixpath.join(config.get("WorkingDir") or "/", _expand(text, config))


_APPLY: dict[str, Callable[[dict[str, Any], str], None]] = {
    "CMD": _cmd, "ENTRYPOINT": _entrypoint, "ENV": _env, "EXPOSE": _expose, "LABEL": _label, "ONBUILD": _onbuild,
    "USER": _user, "VOLUME": _volume, "WORKDIR": _workdir,
}

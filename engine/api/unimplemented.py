"""Docker Engine API endpoints strata does not serve: 501 naming them, not "page not found".

A client that calls `docker build` or `docker plugin` against strata should learn that the
endpoint exists in Docker's API and strata lacks it, not that it typed a wrong path.
Swarm endpoints answer as a Docker engine outside a swarm does (503), which is what the
docker CLI expects to explain.
"""

from __future__ import annotations

import re

# Docker Engine API 1.41 endpoints strata does not implement (method, path pattern).
# `{}` stands for one path segment, `{path}` for a name that may contain slashes.
DOCKER_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("POST", "/build"), ("POST", "/build/prune"), ("POST", "/build/cancel"),
    ("POST", "/session"), ("POST", "/grpc"), ("POST", "/auth"), ("GET", "/containers/{}/attach/ws"),
    ("POST", "/containers/prune"), ("POST", "/images/prune"),
    ("GET", "/distribution/{path}/json"),
    ("POST", "/volumes/prune"),
    ("GET", "/plugins"), ("GET", "/plugins/privileges"), ("POST", "/plugins/pull"), ("GET", "/plugins/{path}/json"),
    ("DELETE", "/plugins/{path}"), ("POST", "/plugins/{path}/enable"), ("POST", "/plugins/{path}/disable"),
    ("POST", "/plugins/{path}/upgrade"), ("POST", "/plugins/create"), ("POST", "/plugins/{path}/push"),
    ("POST", "/plugins/{path}/set"),
)
# Swarm's resources: an engine that is not a swarm manager answers 503 with this message.
SWARM_PREFIXES = ("/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs")
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                 "to connect this node to swarm and try again.")


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(pattern).replace(r"\{path\}", ".+").replace(r"\{\}", "[^/]+") + "$")


_KNOWN = [(method, _compile(pattern)) for method, pattern in DOCKER_ENDPOINTS]


def answer(method: str, path: str) -> tuple[int, str] | None:
    """The status and message Docker's API has for an endpoint strata lacks (None: not Docker's)."""
    if any(path == p or path.startswith(p + "/") for p in SWARM_PREFIXES):
        return 503, NOT_A_MANAGER
    if any(m == method and regex.match(path) for m, regex in _KNOWN):
        return 501, f"not implemented by strata: {method} {path}"
    return None

"""What the distribution protocol names, apart from the HTTP client: media types,
credentials and manifests (the errors a registry answers with are in engine.errors).

Kept apart from client.py so that the engine (and its API server) can name these without
importing an HTTP library on every start: only pull, push and search need the client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20


@dataclass
class Credentials:
    username: str
    password: str


@dataclass
class Manifest:
    media_type: str
    body: bytes
    digest: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

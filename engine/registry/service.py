"""The engine's registry service: where each blob came from, and clients for registries.

It owns the `blob_sources` table (which registry repositories hold a blob we pulled or
pushed), so that a push can ask the registry to mount a layer from a repository that
already has it instead of uploading it again. The HTTP client is imported only when a
registry is actually contacted: most engine starts never talk to one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..images.graphdb import GraphDB
from .protocol import Credentials

if TYPE_CHECKING:
    from ..reference import Reference
    from .client import RegistryClient

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_sources (
    digest TEXT NOT NULL,
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repository)
);
"""


class RegistryService:
    def __init__(self, db: GraphDB) -> None:
        self.db = db
        db.create_tables(_SCHEMA)

    def client(self, registry: str, credentials: Credentials | None, *, insecure: bool) -> RegistryClient:
        from .client import RegistryClient  # the HTTP stack, loaded only by the jobs that talk to a registry

        log.debug("registry client for %s (insecure=%s)", registry, insecure)
        return RegistryClient(registry, credentials, insecure=insecure)

    def remember(self, digest: str, ref: Reference) -> None:
        """Record that `ref`'s repository holds the blob `digest`."""
        with self.db.transaction() as c:
            c.execute("INSERT OR IGNORE INTO blob_sources(digest, registry, repository) VALUES (?, ?, ?)",
                      (digest, ref.registry, ref.repository))

    def mount_source(self, digest: str, ref: Reference) -> str | None:
        """Another repository of `ref`'s registry known to hold `digest` (a cross-repository mount)."""
        rows = self.db.query(
            "SELECT repository FROM blob_sources WHERE digest = ? AND registry = ? AND repository != ? LIMIT 1",
            (digest, ref.registry, ref.repository))
        return rows[0][0] if rows else None

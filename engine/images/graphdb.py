"""GraphDB: a small graph database on SQLite -- entities and named edges.

It records the names and relations the engine resolves: tags (`repo:tag` -> image id),
image -> parent, container names -> container ids, container -> image. Edges hang off
entities; the well-known root entities TAGS and NAMES are the namespaces of tags and
container names. An edge (src, name) has exactly one destination, which is what makes a
tag or a container name unique.

The Graph keeps its own tables (images, layers) in the same database file so that an
image and its tags commit in one transaction: after a crash either both are there or
neither. One connection is shared by every thread and serialised by a lock; WAL mode
keeps readers of other processes (inspection tools) out of the writer's way.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TAGS = "tags"
NAMES = "names"
DIGESTS = "digests"  # `repo@sha256:...` -> image id: the manifests it was pulled or pushed as (RepoDigests)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    id   TEXT PRIMARY KEY,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edges (
    src  TEXT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    dst  TEXT NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    PRIMARY KEY (src, name)
);
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst, name);
"""


class GraphDB:
    """Entities and named edges in SQLite; every public method is atomic and thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a journal row must be on disk before the driver acts on it, even across power loss
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._depth = 0
        with self.transaction():
            self.create_tables(_SCHEMA)
            for root in (TAGS, NAMES, DIGESTS):
                self.conn.execute("INSERT OR IGNORE INTO entities(id, kind) VALUES (?, 'root')", (root,))

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all; nests (inner ones join)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    def create_tables(self, schema: str) -> None:
        """Run DDL statements inside the current transaction (executescript would commit)."""
        with self.transaction() as c:
            for statement in schema.split(";"):
                if statement.strip():
                    c.execute(statement)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    # -- entities ----------------------------------------------------------------------

    def add_entity(self, entity_id: str, kind: str) -> None:
        """Record an entity (idempotent; the kind of an existing entity must match)."""
        with self.transaction() as c:
            row = c.execute("SELECT kind FROM entities WHERE id = ?", (entity_id,)).fetchone()
            if row is None:
                c.execute("INSERT INTO entities(id, kind) VALUES (?, ?)", (entity_id, kind))
            elif row[0] != kind:
                raise ValueError(f"entity {entity_id} is a {row[0]}, not a {kind}")

    def remove_entity(self, entity_id: str) -> None:
        """Delete an entity and every edge from or to it."""
        with self.transaction() as c:
            c.execute("DELETE FROM entities WHERE id = ?", (entity_id,))

    def entity_kind(self, entity_id: str) -> str | None:
        rows = self.query("SELECT kind FROM entities WHERE id = ?", (entity_id,))
        return rows[0][0] if rows else None

    def entities(self, kind: str) -> list[str]:
        return [r[0] for r in self.query("SELECT id FROM entities WHERE kind = ? ORDER BY id", (kind,))]

    def count(self, kind: str) -> int:
        return self.query("SELECT COUNT(*) FROM entities WHERE kind = ?", (kind,))[0][0]

    # -- edges -------------------------------------------------------------------------

    def add_edge(self, src: str, name: str, dst: str, *, replace: bool = False) -> str | None:
        """Set the edge `src --name--> dst`; returns the destination it replaced, if any.

        Without `replace`, an existing edge to another destination is a ValueError (a
        name is taken); both entities must exist.
        """
        with self.transaction() as c:
            row = c.execute("SELECT dst FROM edges WHERE src = ? AND name = ?", (src, name)).fetchone()
            if row is not None and row[0] != dst and not replace:
                raise ValueError(f"{src}/{name} already points to {row[0]}")
            c.execute("INSERT OR REPLACE INTO edges(src, name, dst) VALUES (?, ?, ?)", (src, name, dst))
            return row[0] if row is not None and row[0] != dst else None

    def remove_edge(self, src: str, name: str) -> str | None:
        """Delete an edge; returns its destination (None when there was none)."""
        with self.transaction() as c:
            row = c.execute("SELECT dst FROM edges WHERE src = ? AND name = ?", (src, name)).fetchone()
            c.execute("DELETE FROM edges WHERE src = ? AND name = ?", (src, name))
            return row[0] if row else None

    def get_edge(self, src: str, name: str) -> str | None:
        rows = self.query("SELECT dst FROM edges WHERE src = ? AND name = ?", (src, name))
        return rows[0][0] if rows else None

    def edges_from(self, src: str) -> dict[str, str]:
        return dict(self.query("SELECT name, dst FROM edges WHERE src = ? ORDER BY name", (src,)))

    def edges_to(self, dst: str, name: str | None = None) -> list[tuple[str, str]]:
        """(src, name) of every edge into `dst` (only those called `name` when given)."""
        if name is None:
            return self.query("SELECT src, name FROM edges WHERE dst = ? ORDER BY src, name", (dst,))
        return self.query("SELECT src, name FROM edges WHERE dst = ? AND name = ? ORDER BY src", (dst, name))

    # -- the engine's queries ----------------------------------------------------------

    def resolve_tag(self, tag: str) -> str | None:
        return self.get_edge(TAGS, tag)

    def tags_of(self, image_id: str) -> list[str]:
        rows = self.query("SELECT name FROM edges WHERE src = ? AND dst = ? ORDER BY name", (TAGS, image_id))
        return [row[0] for row in rows]

    def digests_of(self, image_id: str) -> list[str]:
        rows = self.query("SELECT name FROM edges WHERE src = ? AND dst = ? ORDER BY name", (DIGESTS, image_id))
        return [row[0] for row in rows]

    def resolve_name(self, name: str) -> str | None:
        """The container id a container name points to."""
        return self.get_edge(NAMES, name)

    def parent_of(self, image_id: str) -> str | None:
        return self.get_edge(image_id, "parent")

    def children_of(self, image_id: str) -> list[str]:
        return [src for src, _ in self.edges_to(image_id, "parent")]

    def users_of_image(self, image_id: str) -> list[str]:
        """Containers whose image is `image_id` (edges container --image--> image)."""
        return [src for src, _ in self.edges_to(image_id, "image")]

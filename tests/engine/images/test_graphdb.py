"""GraphDB: entities, named edges, the engine's queries, transactions, durability."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from engine.images.graphdb import NAMES, TAGS, GraphDB


@pytest.fixture
def db(tmp_path):
    d = GraphDB(str(tmp_path / "graph.db"))
    yield d
    d.close()


def test_names_parents_and_containers(db: GraphDB) -> None:
    for image in ("sha256:a", "sha256:b", "sha256:c"):
        db.add_entity(image, "image")
    db.add_edge("sha256:b", "parent", "sha256:a")
    db.add_edge("sha256:c", "parent", "sha256:a")
    db.add_edge(TAGS, "busybox:latest", "sha256:a")
    db.add_edge(TAGS, "busybox:1", "sha256:a")
    db.add_entity("c1", "container")
    db.add_edge(NAMES, "web", "c1")
    db.add_edge("c1", "image", "sha256:b")

    assert db.resolve_tag("busybox:latest") == "sha256:a"
    assert db.tags_of("sha256:a") == ["busybox:1", "busybox:latest"]
    assert db.children_of("sha256:a") == ["sha256:b", "sha256:c"]
    assert db.parent_of("sha256:b") == "sha256:a"
    assert db.resolve_name("web") == "c1"
    assert db.users_of_image("sha256:b") == ["c1"]
    assert db.count("image") == 3 and db.count("container") == 1


def test_a_name_is_unique_unless_replaced(db: GraphDB) -> None:
    db.add_entity("x", "image")
    db.add_entity("y", "image")
    db.add_edge(TAGS, "t:1", "x")
    with pytest.raises(ValueError, match="already points to x"):
        db.add_edge(TAGS, "t:1", "y")
    assert db.add_edge(TAGS, "t:1", "y", replace=True) == "x"
    assert db.resolve_tag("t:1") == "y"


def test_removing_an_entity_removes_its_edges(db: GraphDB) -> None:
    db.add_entity("x", "image")
    db.add_entity("y", "image")
    db.add_edge("y", "parent", "x")
    db.add_edge(TAGS, "t:1", "x")
    db.remove_entity("x")
    assert db.parent_of("y") is None
    assert db.resolve_tag("t:1") is None
    assert db.edges_to("x") == []


def test_edges_need_both_entities(db: GraphDB) -> None:
    db.add_entity("x", "image")
    with pytest.raises(sqlite3.IntegrityError):
        db.add_edge("x", "parent", "missing")


def test_a_failed_transaction_leaves_nothing(db: GraphDB) -> None:
    with pytest.raises(RuntimeError), db.transaction():
        db.add_entity("x", "image")
        db.add_edge(TAGS, "t:1", "x")
        raise RuntimeError("crash in the middle")
    assert db.entity_kind("x") is None
    assert db.resolve_tag("t:1") is None


def test_committed_state_survives_reopening(tmp_path) -> None:
    path = str(tmp_path / "graph.db")
    first = GraphDB(path)
    first.add_entity("x", "image")
    first.add_edge(TAGS, "t:1", "x")
    first.close()
    second = GraphDB(path)
    try:
        assert second.resolve_tag("t:1") == "x"
        assert second.query("PRAGMA journal_mode")[0][0] == "wal"
    finally:
        second.close()


def test_parallel_writers_in_threads(db: GraphDB) -> None:
    def work(n: int) -> None:
        for i in range(50):
            with db.transaction():
                db.add_entity(f"e{n}-{i}", "image")
                db.add_edge(TAGS, f"r{n}:{i}", f"e{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.count("image") == 200
    assert len(db.edges_from(TAGS)) == 200

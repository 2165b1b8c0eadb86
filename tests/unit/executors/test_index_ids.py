"""`_index` finds Documents by id through its id -> slot map (no index on the id in SQLite): the map
against a dict under appends and deletes, ids that share a hash, replicas that follow each other's
writes, and a schema-2 store (SQLite's unique index) moved over."""

import random
import sqlite3

import numpy as np
import pytest

from jinad_fab import Document, DocumentArray
from jinad_fab.errors import BadDocument
from jinad_fab.executors import index as index_module
from jinad_fab.executors.index import IndexExecutor
from jinad_fab.executors.index_ids import IdMap, id_hashes

pytestmark = pytest.mark.timeout(60)


def open_index(path, **kwargs):
    return IndexExecutor(metas={"workspace": str(path), "name": "idx"}, durability="normal", **kwargs)


def found(ids_map, live, asked):
    """id -> slot as the executor reads the map: candidates by hash, confirmed against the true ids."""
    i, slots = ids_map.find(id_hashes(asked))
    return {asked[a]: s for a, s in zip(i.tolist(), slots.tolist()) if live[s] == asked[a]}


def test_the_map_agrees_with_a_dict_through_appends_and_deletes():
    rng = random.Random(5)
    pool = [f"{rng.getrandbits(64):x}" for _ in range(6000)]
    ids_map, live = IdMap(), []
    for start in range(0, 4900, 700):  # appends that grow the table several times
        ids_map.append(id_hashes(pool[start:start + 700]))
        live += pool[start:start + 700]
    for _ in range(3000):  # deletes as the executor makes them: the last slot moves into the freed one
        slot, last = rng.randrange(len(live)), len(live) - 1
        ids_map.delete(slot, last)
        live[slot] = live[last]
        live.pop()
    ids_map.append(id_hashes(pool[5000:5500]))
    live += pool[5000:5500]
    assert ids_map.n == len(live)
    assert found(ids_map, live, pool) == {doc_id: slot for slot, doc_id in enumerate(live)}


def test_ids_that_share_a_hash_are_told_apart_by_sqlite(tmp_path, monkeypatch):
    # every id hashes alike: each lookup finds every slot as a candidate, and SQLite says which is which
    monkeypatch.setattr(index_module, "id_hashes", lambda ids: np.zeros(len(ids), dtype=np.int64))
    ex = open_index(tmp_path)
    try:
        X = np.arange(300 * 4, dtype=np.float32).reshape(300, 4)
        ex.add([f"d{i}" for i in range(300)], X)
        assert "d7" in ex and "e7" not in ex
        with pytest.raises(BadDocument, match="already indexed") as err:
            ex.add(["e1", "d299"], X[:2])
        assert err.value.doc_id == "d299" and len(ex) == 300
        ex.remove([f"d{i}" for i in range(0, 300, 3)])
        ex.replace([("d1", 0)], np.full((1, 4), -1, np.float32), [None])
        assert sorted(ex.ids) == sorted(f"d{i}" for i in range(300) if i % 3)
        slots, _ = ex.search_vectors(np.full((1, 4), -1, np.float32), 1)
        assert ex.ids[slots[0][0]] == "d1"
        with pytest.raises(BadDocument, match="not in the index"):
            ex.remove(["d0"])
    finally:
        ex.close()


def test_deleting_ids_whose_rows_move_during_the_same_request(tmp_path):
    ex = open_index(tmp_path)
    try:
        ex.add([f"d{i}" for i in range(10)], np.eye(10, dtype=np.float32))
        ex.remove(["d0", "d9", "d1", "d8"])  # d9 moves into d0's slot, then goes itself
        assert sorted(ex.ids) == [f"d{i}" for i in range(2, 8)]
        slots, scores = ex.search_vectors(np.eye(10, dtype=np.float32)[2:8], 1)
        assert [ex.ids[s] for s in slots[:, 0]] == [f"d{i}" for i in range(2, 8)] and not scores.any()
        ex.add(["d0", "d9"], np.eye(10, dtype=np.float32)[[0, 9]])  # the freed ids can come back
        assert len(ex) == 8 and "d9" in ex
    finally:
        ex.close()


def test_a_replica_knows_the_ids_another_replica_wrote(tmp_path):
    make = lambda: IndexExecutor(metas={"workspace": str(tmp_path), "name": "idx"},  # noqa: E731
                                 runtime_args={"parallel": 2}, durability="normal")
    a, b = make(), make()
    try:
        a.add(["x", "y"], np.eye(2, dtype=np.float32))
        assert "x" in b  # b builds its map now
        a.add(["z"], np.ones((1, 2), np.float32))  # appended after b's map was built
        with pytest.raises(BadDocument, match="already indexed"):
            b.index(docs=DocumentArray([Document(id="z", embedding=np.zeros(2, np.float32))]))
        b.delete(docs=DocumentArray([Document(id="x")]))  # moves z into x's slot
        a.update(docs=DocumentArray([Document(id="z", text="moved")]))
        assert sorted(a.ids) == ["y", "z"] and "x" not in a
        docs = DocumentArray([Document(id="q", embedding=np.ones(2, np.float32))])
        b.search(docs=docs, parameters={"top_k": 1}, header={})
        assert (docs[0].matches[0].id, docs[0].matches[0].text) == ("z", "moved")
    finally:
        a.close()
        b.close()


def test_a_schema_2_store_drops_sqlites_unique_index(tmp_path):
    ex = open_index(tmp_path)
    ex.add(["a", "b", "c"], np.eye(3, dtype=np.float32))
    ex.close()
    path = tmp_path / "idx" / "index.sqlite"
    with sqlite3.connect(path) as db:  # back to the table schema 2 wrote
        db.execute("ALTER TABLE docs RENAME TO docs_v3")
        db.execute("CREATE TABLE docs (slot INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT)")
        db.execute("INSERT INTO docs SELECT * FROM docs_v3")
        db.execute("DROP TABLE docs_v3")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    db.close()
    ex = open_index(tmp_path)
    try:
        assert ex.ids == ["a", "b", "c"] and "b" in ex
        with pytest.raises(BadDocument, match="already indexed"):
            ex.add(["b"], np.ones((1, 3), np.float32))
        ex.remove(["a"])
        assert sorted(ex.ids) == ["b", "c"]
    finally:
        ex.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("3",)
        indexes = db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'docs' AND type = 'index'").fetchall()
        assert indexes == []
    db.close()

"""`_index` in real Flows: real Peas over ZeroMQ, shards, restarts, the CRUD example, feeders."""

import os
import sqlite3
import subprocess
import sys
import zlib

import numpy as np
import pytest

from jinad_fab import Document, DocumentArray, Flow
from jinad_fab.errors import RequestError
from jinad_fab.runtime.pea import shard_of

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLE = os.path.join(ROOT, "examples", "crud", "run.py")


def guardians() -> DocumentArray:
    return DocumentArray([
        Document(id="🐲", embedding=np.array([0, 0]), tags={"guardian": "Azure Dragon", "position": "East"}),
        Document(id="🐦", embedding=np.array([1, 0]), tags={"guardian": "Vermilion Bird", "position": "South"}),
        Document(id="🐢", embedding=np.array([0, 1]), tags={"guardian": "Black Tortoise", "position": "North"}),
        Document(id="🐯", embedding=np.array([1, 1]), tags={"guardian": "White Tiger", "position": "West"}),
    ])


def hits(results: DocumentArray) -> list[tuple[str, float]]:
    assert len(results) == 1
    return [(m.id, round(m.scores["euclidean"], 6)) for m in results[0].matches]


def brute(X: np.ndarray, Q: np.ndarray, k: int) -> list[list[int]]:
    D = ((Q.astype(np.float64)[:, None, :] - X.astype(np.float64)[None]) ** 2).sum(-1)
    return np.argsort(D, axis=1, kind="stable")[:, :k].tolist()


def test_the_crud_example_prints_what_its_comments_say():
    out = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True, timeout=90, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT, "PYTHONIOENCODING": "utf-8"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["🐲 0 🐦 1 🐢 1", "🐲 0 🐯 0 🐦 1", "🐯 0 🐢 1"]


def test_the_guardians_through_a_flow(tmp_path):
    docs = guardians()
    with Flow(workspace=str(tmp_path)).add(uses="_index") as f:
        f.index(docs)
        first = f.search(docs[0], parameters={"top_k": 3})
        assert hits(first) == [("🐲", 0.0), ("🐦", 1.0), ("🐢", 1.0)]
        assert first[0].matches[1].tags == {"guardian": "Vermilion Bird", "position": "South"}
        assert first[0].matches[2].embedding.tolist() == [0.0, 1.0]
        docs[0].embedding = np.array([1, 1])
        f.update(docs[0])
        assert hits(f.search(docs[0], parameters={"top_k": 3})) == [("🐲", 0.0), ("🐯", 0.0), ("🐦", 1.0)]
        f.delete(["🐦", "🐲"])
        assert hits(f.search(docs[0], parameters={"top_k": 3})) == [("🐯", 0.0), ("🐢", 1.0)]


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_spread_by_id_and_search_merges_the_exact_top_k(tmp_path, shards):
    rng = np.random.default_rng(shards)
    n, dim, k = 900, 16, 7
    X = rng.standard_normal((n, dim)).astype(np.float32)
    Q = rng.standard_normal((25, dim)).astype(np.float32)
    ids = [f"doc-{i}" for i in range(n)]
    f = Flow(workspace=str(tmp_path)).add(name="vec", uses="_index", shards=shards)
    with f:
        f.index([Document(id=i, embedding=x, text=f"text of {i}") for i, x in zip(ids, X)], request_size=128)
        queries = [Document(id=f"q{j}", embedding=q) for j, q in enumerate(Q)]
        got = f.search(queries, parameters={"top_k": k}, request_size=10)
        by_q = {d.id: d for d in got}
        want = brute(X, Q, k)
        for j in range(len(Q)):
            matches = by_q[f"q{j}"].matches
            assert [m.id for m in matches] == [ids[i] for i in want[j]]
            dist = [m.scores["euclidean"] for m in matches]
            assert dist == sorted(dist)
            assert matches[0].text == f"text of {matches[0].id}"

        # update moves 60 Documents onto other Documents' spots; each update must reach its shard
        moved = {ids[i]: X[i + 1] for i in range(0, 120, 2)}
        f.update([Document(id=i, embedding=v, text="moved") for i, v in moved.items()])
        got = f.search([Document(id=f"m{i}", embedding=v) for i, v in enumerate(moved.values())],
                       parameters={"top_k": 2})
        for d, moved_id in zip(sorted(got, key=lambda d: int(d.id[1:])), moved):
            assert {m.id for m in d.matches} == {moved_id, ids[ids.index(moved_id) + 1]}
            assert [m.scores["euclidean"] for m in d.matches] == [0.0, 0.0]

        # delete reaches the right shard: the deleted ids vanish from every search
        deleted = ids[:300]
        f.delete(deleted)
        got = f.search([Document(embedding=X[i]) for i in range(300)], parameters={"top_k": 1})
        assert not {d.matches[0].id for d in got} & set(deleted)

    # each shard's own store holds exactly the ids that hash to it
    for s in range(shards):
        db = os.path.join(str(tmp_path), f"vec-shard{s}", "index.sqlite")
        with sqlite3.connect(db) as conn:
            stored = {r[0] for r in conn.execute("SELECT id FROM docs")}
        assert stored == {i for i in ids[300:] if zlib.crc32(i.encode()) % shards == s}
        assert stored


def test_bad_input_fails_the_request_naming_pod_and_document(tmp_path):
    with Flow(workspace=str(tmp_path)).add(name="vec", uses="_index", shards=2) as f:
        f.index([Document(id=f"d{i}", embedding=np.ones(4) * i) for i in range(10)])
        with pytest.raises(RequestError, match="vec.*'wrong'.*dimension 3.*dimension 4") as info:
            f.index([Document(id="wrong", embedding=[1, 2, 3])])
        assert info.value.pod == "vec"
        with pytest.raises(RequestError, match="'nothing'.*no embedding"):
            f.index([Document(id="nothing", text="no vector")])
        with pytest.raises(RequestError, match="top_k must be a positive integer"):
            f.search(Document(embedding=np.ones(4)), parameters={"top_k": 0})
        ghost_shard = shard_of("ghost", 2)
        same = next(f"d{i}" for i in range(10) if shard_of(f"d{i}", 2) == ghost_shard)
        other = next(f"d{i}" for i in range(10) if shard_of(f"d{i}", 2) != ghost_shard)
        with pytest.raises(RequestError, match="'ghost'.*not in the index.*nothing was deleted"):
            f.delete([same, "ghost"])
        with pytest.raises(RequestError, match="'ghost'.*not in the index"):
            f.update([Document(id="ghost", embedding=np.ones(4)), Document(id=same, embedding=np.zeros(4))])
        # the Flow keeps serving, and the shard that saw the unknown id changed nothing
        got = f.search(Document(embedding=np.ones(4)), parameters={"top_k": 20})
        assert sorted(m.id for m in got[0].matches) == sorted(f"d{i}" for i in range(10))
        dist = {m.id: m.scores["euclidean"] for m in got[0].matches}
        assert dist == {f"d{i}": abs(i - 1) * 2.0 for i in range(10)}  # `same` was not moved to zeros
        # shards check their own ids: the part of a request that went to another shard is applied
        with pytest.raises(RequestError, match="'ghost'"):
            f.delete([other, "ghost"])
        got = f.search(Document(embedding=np.ones(4)), parameters={"top_k": 20})
        assert other not in got[0].matches.ids and len(got[0].matches) == 9


def test_a_restarted_flow_finds_everything_again(tmp_path):
    rng = np.random.default_rng(11)
    X = rng.random((400, 8)).astype(np.float32)
    f = Flow(workspace=str(tmp_path)).add(name="vec", uses="_index", shards=2)
    with f:
        f.index([Document(id=str(i), embedding=x, tags={"i": i}) for i, x in enumerate(X)])
        f.delete([str(i) for i in range(50)])
        before = f.search([Document(id=f"q{j}", embedding=X[j * 7]) for j in range(30)], parameters={"top_k": 5})
    with f:
        after = f.search([Document(id=f"q{j}", embedding=X[j * 7]) for j in range(30)], parameters={"top_k": 5})
        f.index([Document(id="new", embedding=np.zeros(8))])
        assert f.search(Document(embedding=np.zeros(8)), parameters={"top_k": 1})[0].matches[0].id == "new"
    key = {d.id: [(m.id, m.scores["euclidean"], m.tags["i"]) for m in d.matches] for d in before}
    assert {d.id: [(m.id, m.scores["euclidean"], m.tags["i"]) for m in d.matches] for d in after} == key
    assert all(int(m[0]) >= 50 for ms in key.values() for m in ms)


def test_feeders_through_flows(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.random((64, 8)).astype(np.float32)
    csv_path = tmp_path / "pics.csv"
    csv_path.write_text("pic_url,label\nhttp://x/1.png,cat\nhttp://x/2.png,dog\n", encoding="utf-8")
    nd_path = tmp_path / "qa.ndjson"
    nd_path.write_text('{"question_id": "q1", "text": "why"}\n{"question_id": "q2", "text": "how"}\n',
                       encoding="utf-8")
    (tmp_path / "note.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x01")
    with Flow(workspace=str(tmp_path / "ws")).add(uses="_index") as f:
        f.index_ndarray(X, request_size=10)
        got = f.search_ndarray(X[:5], parameters={"top_k": 1})
        assert [d.matches[0].scores["euclidean"] for d in got] == [0.0] * 5
        assert [d.matches[0].embedding.tolist() for d in got] == X[:5].tolist()
    with Flow().add(uses="_pass") as f:
        got = f.index_csv(str(csv_path), field_resolver={"pic_url": "uri"})
        assert [(d.uri, d.tags["label"]) for d in got] == [("http://x/1.png", "cat"), ("http://x/2.png", "dog")]
        got = f.search_ndjson(str(nd_path), field_resolver={"question_id": "id"})
        assert [(d.id, d.text) for d in got] == [("q1", "why"), ("q2", "how")]
        got = f.index_files([str(tmp_path / "*.txt"), str(tmp_path / "*.mp4")])
        by_name = {os.path.basename(d.uri): d for d in got}
        assert by_name["note.txt"].text == "hello"
        assert (by_name["clip.mp4"].mime_type, by_name["clip.mp4"].buffer) == ("video/mp4", b"\x00\x01")

"""The `_index` Executor in-process: no sockets, no Peas — CRUD, exactness, bad input, persistence."""

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from jinad_fab import Document, DocumentArray
from jinad_fab.errors import BadConfig, BadDocument, BadInput
from jinad_fab.executors import load_executor
from jinad_fab.executors.index import IndexExecutor

pytestmark = pytest.mark.timeout(60)


ENGINES = ["numpy"] + (["faiss"] if importlib.util.find_spec("faiss") else [])


@pytest.fixture(params=ENGINES)
def make(tmp_path, request):
    """Every test that uses it runs once per search engine: faiss (when installed) and the numpy fallback."""
    made = []

    def factory(**kwargs):
        kwargs.setdefault("engine", request.param)
        ex = IndexExecutor(metas={"workspace": str(tmp_path), "name": "idx"}, **kwargs)
        assert ex.engine == request.param
        made.append(ex)
        return ex

    yield factory
    for ex in made:
        ex.close()


def guardians() -> DocumentArray:
    return DocumentArray([
        Document(id="🐲", embedding=np.array([0, 0]), tags={"guardian": "Azure Dragon", "position": "East"}),
        Document(id="🐦", embedding=np.array([1, 0]), tags={"guardian": "Vermilion Bird", "position": "South"}),
        Document(id="🐢", embedding=np.array([0, 1]), tags={"guardian": "Black Tortoise", "position": "North"}),
        Document(id="🐯", embedding=np.array([1, 1]), tags={"guardian": "White Tiger", "position": "West"}),
    ])


def search(ex, embeddings, top_k=3, metric=None):
    docs = DocumentArray([Document(id=f"q{i}", embedding=e) for i, e in enumerate(embeddings)])
    params = {"top_k": top_k} | ({"metric": metric} if metric else {})
    header: dict = {}
    ex.search(docs=docs, parameters=params, header=header)
    return docs, header


def hits(doc, metric="euclidean"):
    return [(m.id, round(m.scores[metric], 6)) for m in doc.matches]


def brute(X, Q, k, metric):
    X, Q = X.astype(np.float64), Q.astype(np.float64)
    if metric == "euclidean":
        D = np.sqrt(((Q[:, None, :] - X[None]) ** 2).sum(-1))
    elif metric == "cosine":
        D = 1 - (Q @ X.T) / np.linalg.norm(Q, axis=1)[:, None] / np.linalg.norm(X, axis=1)[None]
    else:
        D = -(Q @ X.T)
    return np.argsort(D, axis=1, kind="stable")[:, :k]


def test_the_guardians_story(make):
    ex = make()
    docs = guardians()
    ex.index(docs=docs)
    got, header = search(ex, [[0, 0]])
    assert hits(got[0]) == [("🐲", 0.0), ("🐦", 1.0), ("🐢", 1.0)]
    assert header["merge"] == {"score": "euclidean", "ascending": True, "top_k": 3}
    m = got[0].matches[0]
    assert m.tags == {"guardian": "Azure Dragon", "position": "East"}
    assert m.embedding.tolist() == [0.0, 0.0]

    ex.update(docs=DocumentArray([Document(id="🐲", embedding=[1, 1], tags=docs[0].tags)]))
    got, _ = search(ex, [[1, 1]])
    assert hits(got[0]) == [("🐲", 0.0), ("🐯", 0.0), ("🐦", 1.0)]

    ex.delete(docs=DocumentArray([Document(id="🐦"), Document(id="🐲")]))
    got, _ = search(ex, [[1, 1]])
    assert hits(got[0]) == [("🐯", 0.0), ("🐢", 1.0)]
    assert sorted(ex.ids) == ["🐢", "🐯"] and len(ex) == 2


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
@pytest.mark.parametrize("n", [7, 300, 9001, 20011])
def test_search_is_exact_against_brute_force(make, metric, n):
    # a small row_block so the blocked path crosses many blocks and a padded last one
    ex = make(row_block=1024, query_block=16)
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 24)).astype(np.float32)
    ex.add([str(i) for i in range(n)], X)
    Q = rng.standard_normal((40, 24)).astype(np.float32)
    for k in (1, 10, 33):
        slots, scores = ex.search_vectors(Q, k, metric)
        want = brute(X, Q, min(k, n), metric)
        assert slots.shape == (40, min(k, n))
        assert [[int(ex.ids[s]) for s in row] for row in slots] == want.tolist()
        ascending = metric != "inner_product"
        assert np.all(np.diff(scores, axis=1) >= 0) if ascending else np.all(np.diff(scores, axis=1) <= 0)


def test_scores_per_metric_and_the_merge_header(make):
    ex = make()
    ex.add(["a", "b"], np.array([[3, 4], [0, 2]], dtype=np.float32))
    got, header = search(ex, [[3, 4]], top_k=2, metric="cosine")
    assert header["merge"] == {"score": "cosine", "ascending": True, "top_k": 2}
    assert [m.id for m in got[0].matches] == ["a", "b"]
    assert got[0].matches[0].scores["cosine"] == pytest.approx(0.0, abs=1e-9)
    assert got[0].matches[1].scores["cosine"] == pytest.approx(1 - 0.8)
    got, header = search(ex, [[3, 4]], top_k=2, metric="inner_product")
    assert header["merge"]["ascending"] is False
    assert hits(got[0], "inner_product") == [("a", 25.0), ("b", 8.0)]
    got, _ = search(ex, [[0, 0]], top_k=5)
    assert hits(got[0]) == [("b", 2.0), ("a", 5.0)]  # top_k larger than the index: all of it


def test_self_distance_is_exactly_zero_for_large_vectors(make):
    ex = make()
    rng = np.random.default_rng(0)
    X = (rng.random((12000, 128)) * 1000).astype(np.float32)
    ex.add([str(i) for i in range(len(X))], X)
    slots, scores = ex.search_vectors(X[:50], 1)
    assert slots[:, 0].tolist() == list(range(50))
    assert scores[:, 0].tolist() == [0.0] * 50


def test_stored_fields_come_back_on_matches(make):
    ex = make()
    blob = np.arange(6, dtype=np.int16).reshape(2, 3)
    doc = Document(id="full", text="hello", uri="file:///x.png", mime_type="image/png", buffer=b"\x00\xff",
                   blob=blob, tags={"n": 1, "nested": {"a": [1, 2]}}, embedding=[1, 2, 3],
                   chunks=[Document(id="c1", text="chunk")])
    ex.index(docs=DocumentArray([doc, Document(id="bare", embedding=[9, 9, 9])]))
    got, _ = search(ex, [[1, 2, 3]], top_k=2)
    full, bare = got[0].matches
    assert (full.id, full.text, full.uri, full.mime_type, full.buffer) == ("full", "hello", "file:///x.png",
                                                                           "image/png", b"\x00\xff")
    assert full.blob.dtype == np.int16 and full.blob.tolist() == blob.tolist()
    assert full.tags == {"n": 1, "nested": {"a": [1, 2]}}
    assert full.chunks[0].text == "chunk"
    assert full.embedding.dtype == np.float32 and full.embedding.tolist() == [1, 2, 3]
    assert bare.text is None and not bare.has("tags") and bare.embedding.tolist() == [9, 9, 9]


def test_update_without_embedding_keeps_the_vector_and_replaces_the_rest(make):
    ex = make()
    ex.index(docs=DocumentArray([Document(id="a", embedding=[1, 0], text="old", tags={"v": 1})]))
    ex.update(docs=DocumentArray([Document(id="a", text="new")]))
    got, _ = search(ex, [[1, 0]])
    m = got[0].matches[0]
    assert (m.id, m.text, m.has("tags"), m.scores["euclidean"]) == ("a", "new", False, 0.0)


def test_deleted_ids_are_gone_and_can_be_indexed_again(make):
    ex = make()
    rng = np.random.default_rng(3)
    X = rng.random((50, 4)).astype(np.float32)
    ex.add([str(i) for i in range(50)], X)
    gone = [str(i) for i in range(0, 50, 3)]
    ex.delete(docs=DocumentArray([Document(id=i) for i in gone]))
    assert len(ex) == 50 - len(gone)
    slots, _ = ex.search_vectors(X, 50)
    found = {ex.ids[s] for row in slots for s in row}
    assert found == {str(i) for i in range(50)} - set(gone)
    # every surviving id still finds its own vector first, after the rows moved
    for i in range(50):
        if str(i) not in gone:
            s, d = ex.search_vectors(X[i:i + 1], 1)
            assert (ex.ids[s[0, 0]], d[0, 0]) == (str(i), 0.0)
    ex.index(docs=DocumentArray([Document(id="0", embedding=X[0])]))
    assert "0" in ex


@pytest.mark.parametrize("bad, message", [
    (Document(id="short", embedding=[1, 2]), "'short'.*dimension 2.*dimension 3"),
    (Document(id="none"), "'none'.*no embedding"),
    (Document(id="nan", embedding=[1, float("nan"), 0]), "'nan'.*NaN"),
    (Document(id="cplx", embedding=np.array([1j, 0, 0])), "'cplx'.*real numbers"),
    (Document(id="mat", embedding=np.zeros((3, 1))), "'mat'.*1-dimensional"),
])
def test_bad_documents_on_index_name_the_document_and_change_nothing(make, bad, message):
    ex = make()
    ex.index(docs=DocumentArray([Document(id="ok", embedding=[1, 2, 3])]))
    with pytest.raises(BadDocument, match=message) as info:
        ex.index(docs=DocumentArray([Document(id="fine", embedding=[0, 0, 0]), bad]))
    assert info.value.doc_id == bad.id
    assert ex.ids == ["ok"]  # the whole request was refused
    assert IndexExecutor(metas={"workspace": ex.metas["workspace"], "name": "idx"}).ids == ["ok"]


def test_non_numeric_embeddings_are_refused_where_they_are_set():
    with pytest.raises(BadDocument, match="'word'.*numeric"):
        Document(id="word", embedding=["a", "b"])


def test_duplicates_unknown_ids_and_bad_parameters(make):
    ex = make()
    ex.index(docs=DocumentArray([Document(id="a", embedding=[1, 0]), Document(id="b", embedding=[0, 1])]))
    with pytest.raises(BadDocument, match="'a'.*already indexed"):
        ex.index(docs=DocumentArray([Document(id="a", embedding=[1, 1])]))
    with pytest.raises(BadDocument, match="'c'.*twice"):
        ex.index(docs=DocumentArray([Document(id="c", embedding=[1, 1]), Document(id="c", embedding=[1, 1])]))
    with pytest.raises(BadDocument, match="'zz'.*not in the index.*nothing was updated") as info:
        ex.update(docs=DocumentArray([Document(id="a", embedding=[5, 5]), Document(id="zz", embedding=[1, 1])]))
    assert info.value.doc_id == "zz"
    with pytest.raises(BadDocument, match="'x'.*nothing was deleted.*'x', 'y'"):
        ex.delete(docs=DocumentArray([Document(id="a"), Document(id="x"), Document(id="y")]))
    assert sorted(ex.ids) == ["a", "b"]  # neither the update nor the delete touched 'a'
    got, _ = search(ex, [[1, 0]], top_k=1)
    assert hits(got[0]) == [("a", 0.0)]
    for top_k in (0, -1, "3", 2.5, True):
        with pytest.raises(BadInput, match="top_k must be a positive integer.*'q0'"):
            search(ex, [[1, 0]], top_k=top_k)
    with pytest.raises(BadInput, match="unknown metric 'manhattan'"):
        search(ex, [[1, 0]], metric="manhattan")
    with pytest.raises(BadDocument, match="'q0'.*dimension 3"):
        search(ex, [[1, 0, 0]])
    with pytest.raises(BadDocument, match="'q0'.*no embedding"):
        ex.search(docs=DocumentArray([Document(id="q0")]), parameters={}, header={})


def test_empty_requests_and_an_empty_index(make):
    ex = make()
    ex.index(docs=DocumentArray())
    ex.delete(docs=DocumentArray())
    got, header = search(ex, [[1, 2]], top_k=4)
    assert len(got[0].matches) == 0 and header["merge"]["top_k"] == 4
    assert ex.search_vectors(np.zeros((3, 2), np.float32), 5)[0].shape == (3, 0)


def test_config_is_checked(tmp_path):
    for kwargs in ({"metric": "hamming"}, {"dim": 0}, {"top_k": 0}, {"durability": "maybe"},
                   {"row_block": 1000}):
        with pytest.raises(BadConfig):
            IndexExecutor(metas={"workspace": str(tmp_path)}, **kwargs)
    ex = IndexExecutor(metas={"workspace": str(tmp_path), "name": "i"}, dim=4)
    ex.close()
    with pytest.raises(BadConfig, match="dim=8 given.*dimension 4"):
        IndexExecutor(metas={"workspace": str(tmp_path), "name": "i"}, dim=8)


def test_the_loader_finds_it_by_name_and_each_shard_gets_its_own_workspace(tmp_path):
    a = load_executor("_index", uses_metas={"workspace": str(tmp_path), "name": "idx"}, runtime_args={"shard_id": 0})
    b = load_executor("_index", uses_metas={"workspace": str(tmp_path), "name": "idx"}, runtime_args={"shard_id": 1})
    try:
        assert type(a).__name__ == "IndexExecutor"
        assert a.workspace != b.workspace
        assert os.path.isfile(os.path.join(a.workspace, "index.sqlite"))
        assert sorted(a.endpoints) == ["/delete", "/dump", "/index", "/search", "/update"]
    finally:
        a.close()
        b.close()


def test_it_reloads_what_was_committed_with_or_without_close(tmp_path):
    metas = {"workspace": str(tmp_path), "name": "idx"}
    rng = np.random.default_rng(5)
    X = rng.random((3000, 16)).astype(np.float32)
    ex = IndexExecutor(metas=metas)
    ex.add([f"d{i}" for i in range(3000)], X)
    ex.update(docs=DocumentArray([Document(id="d7", embedding=np.ones(16), text="seven")]))
    ex.delete(docs=DocumentArray([Document(id="d8")]))
    before = ex.search_vectors(X[:20], 5)
    ids_before = [[ex.ids[s] for s in row] for row in before[0]]
    # no close(): the process "dies" here; a new instance must see every committed request
    again = IndexExecutor(metas=metas)
    try:
        assert len(again) == 2999 and "d8" not in again and again.dim == 16
        got = again.search_vectors(X[:20], 5)
        assert [[again.ids[s] for s in row] for row in got[0]] == ids_before
        np.testing.assert_array_equal(got[1], before[1])
        docs, _ = search(again, [np.ones(16)], top_k=1)
        assert (docs[0].matches[0].id, docs[0].matches[0].text) == ("d7", "seven")
    finally:
        again.close()
        ex.close()


KILLED_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from jinad_fab.executors.index import IndexExecutor
    ex = IndexExecutor(metas={"workspace": sys.argv[1], "name": "idx"})
    rng = np.random.default_rng(0)
    i = 0
    print("ready", flush=True)
    while True:  # 500 Documents per request, until SIGKILL
        ex.add([f"{i}-{j}" for j in range(500)], rng.random((500, 64), dtype=np.float32))
        i += 1
""")


def test_a_kill_in_the_middle_of_writing_leaves_whole_requests(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    db = os.path.join(str(tmp_path), "idx", "index.sqlite")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ex = IndexExecutor(metas={"workspace": str(tmp_path), "name": "idx"})
    try:
        assert len(ex) > 0 and len(ex) % 500 == 0  # every request whole, none half-written
        done = len(ex) // 500
        assert set(ex.ids) == {f"{i}-{j}" for i in range(done) for j in range(500)}
        v = ex.vectors()
        s, d = ex.search_vectors(v[-3:], 1)
        assert d[:, 0].tolist() == [0.0, 0.0, 0.0]
    finally:
        ex.close()


def test_a_refused_first_request_does_not_fix_the_dimension(make):
    ex = make()
    with pytest.raises(BadDocument, match="'odd'.*JSON-serialisable"):
        ex.index(docs=DocumentArray([Document(id="odd", embedding=[1, 2], tags={"x": object()})]))
    assert ex.dim is None and len(ex) == 0
    ex.index(docs=DocumentArray([Document(id="ok", embedding=[1, 2, 3])]))
    assert ex.dim == 3

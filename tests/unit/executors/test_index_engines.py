"""`_index` engines and storage: faiss and the numpy fallback agree, the vector files are mapped (not
loaded), the journal of in-place writes survives a crash, schema-1 stores move over, approximate search."""

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jinad_fab import Document, DocumentArray
from jinad_fab.errors import BadConfig, BadInput
from jinad_fab.executors import index as index_module
from jinad_fab.executors.index import IndexExecutor

pytestmark = pytest.mark.timeout(120)
HAS_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu is not installed (the `faiss` extra)")


def open_index(path, **kwargs):
    return IndexExecutor(metas={"workspace": str(path), "name": "idx"}, **kwargs)


def clustered(n, d, centres, seed):
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((centres, d)).astype(np.float32) * 4
    return (C[rng.integers(0, centres, n)] + rng.standard_normal((n, d)).astype(np.float32)), C


@needs_faiss
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_faiss_and_numpy_return_the_same_answers(tmp_path, monkeypatch, metric):
    import faiss

    X, _ = clustered(30000, 32, 50, 1)
    Q = X[:300] + 0.01
    answers = {}
    for engine in ("numpy", "faiss"):
        ex = open_index(tmp_path / engine, engine=engine, durability="normal")
        ex.add([str(i) for i in range(len(X))], X)
        # a batch below faiss's matrix-product threshold and a few queries: one numpy product each
        answers[engine] = [ex.search_vectors(q, 10, metric) for q in (Q, Q[:3])]
        if engine == "faiss":
            monkeypatch.setattr(faiss.cvar, "distance_compute_blas_threshold", 0)  # faiss's own kernels
            answers["faiss, whole"] = [ex.search_vectors(Q, 10, metric)]
            # rows cut into 3 parts searched by 3 workers, their candidates merged
            monkeypatch.setattr(index_module, "_PART_MIN_ROWS", 4096)
            monkeypatch.setattr(faiss, "omp_get_max_threads", lambda: 3)
            answers["faiss, 3 parts"] = [ex.search_vectors(Q, 10, metric)]
            assert (ex._searchers is not None) == (metric != "cosine")  # (cosine is numpy's alone)
            # the queries cut into 3 parts, each searched among all rows and scored by a worker
            monkeypatch.setattr(index_module, "_PART_MIN_QUERIES", 64)
            monkeypatch.setattr(ex, "_faiss_candidates", None)  # (not the rows cut: nothing to merge)
            answers["faiss, 3 query parts"] = [ex.search_vectors(Q, 10, metric)]
            uneven = ex.search_vectors(Q[:190], 10, metric)  # parts of 63, 63 and 64 queries
        ex.close()
    for name, got in answers.items():
        for a, b in zip(got, answers["numpy"]):
            np.testing.assert_array_equal(a[0], b[0], err_msg=name)
            np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=0, err_msg=name)
    np.testing.assert_array_equal(uneven[0], answers["numpy"][0][0][:190])
    np.testing.assert_allclose(uneven[1], answers["numpy"][0][1][:190], rtol=1e-12, atol=0)


def test_auto_falls_back_to_numpy_without_faiss(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    ex = open_index(tmp_path)
    try:
        assert ex.engine == "numpy"
        ex.add(["a", "b"], np.array([[0, 0], [3, 4]], np.float32))
        assert ex.search_vectors(np.zeros((1, 2), np.float32), 2)[1].tolist() == [[0.0, 5.0]]
    finally:
        ex.close()
    with pytest.raises(BadConfig, match="faiss-cpu"):
        open_index(tmp_path / "f", engine="faiss")
    with pytest.raises(BadConfig, match="'ivf' is approximate.*faiss-cpu"):
        open_index(tmp_path / "g", index="ivf")


def test_approximate_needs_faiss_and_is_checked(tmp_path):
    with pytest.raises(BadConfig, match="'hnsw' is approximate"):
        open_index(tmp_path, engine="numpy", index="hnsw")
    for bad in ({"index": "lsh"}, {"engine": "torch"}, {"nprobe": 0}, {"rerank": "2"}, {"ann_min": -1}):
        with pytest.raises(BadConfig):
            open_index(tmp_path, **bad)


OPEN_AND_MEASURE = textwrap.dedent("""
    import json, sys, numpy as np, psutil
    from jinad_fab.executors.index import IndexExecutor, _faiss
    proc = psutil.Process()
    np.zeros(1) @ np.zeros(1)  # load BLAS (and faiss, when installed) before the first measurement
    _faiss()
    before = proc.memory_info().rss
    ex = IndexExecutor(metas={"workspace": sys.argv[1], "name": "idx"})
    opened = proc.memory_info().rss
    slots, dist = ex.search_vectors(np.full((1, ex.dim), 7, np.float32), 1)
    print(json.dumps({"opened": opened - before, "n": len(ex), "nbytes": ex.nbytes,
                      "hit": ex.ids[slots[0, 0]], "dist": float(dist[0, 0])}))
""")


def test_opening_maps_the_vectors_instead_of_reading_them(tmp_path):
    n, d = 100_000, 256  # 100 MB of vectors
    ex = open_index(tmp_path, durability="normal")
    rng = np.random.default_rng(0)
    for i in range(0, n, 20000):
        X = rng.random((20000, d), dtype=np.float32)
        if i == 40000:
            X[123] = 7
        ex.add([f"v{j}" for j in range(i, i + 20000)], X)
    ex.close()
    out = subprocess.run([sys.executable, "-c", OPEN_AND_MEASURE, str(tmp_path)], capture_output=True, text=True,
                         timeout=100, env=os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["n"], got["hit"], got["dist"]) == (n, "v40123", 0.0)
    assert got["nbytes"] == n * (4 * d + 4)
    # a loading index would grow by the whole 100 MB before answering; a mapped one by a few pages
    assert got["opened"] < 10 * 2**20, got


@pytest.mark.parametrize("what", ["update", "delete"])
def test_a_crash_between_commit_and_vector_writes_is_repaired_on_open(tmp_path, monkeypatch, what):
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    ex = open_index(tmp_path)
    ex.add([f"d{i}" for i in range(10)], X)

    def killed(self, moves):  # the process dies right after the transaction commits
        raise SystemExit("killed")

    monkeypatch.setattr(IndexExecutor, "_apply_moves", killed)
    with pytest.raises(SystemExit):
        if what == "update":
            ex.update(docs=DocumentArray([Document(id="d3", embedding=[-1, -1, -1, -1])]))
        else:
            ex.delete(docs=DocumentArray([Document(id="d2"), Document(id="d5")]))
    monkeypatch.undo()
    # the files still hold the old rows; the reopened index applies the journal before answering
    assert ex.vectors()[3].tolist() == X[3].tolist()
    again = open_index(tmp_path)
    try:
        if what == "update":
            s, dist = again.search_vectors(np.full((1, 4), -1, np.float32), 1)
            assert (again.ids[s[0, 0]], dist[0, 0]) == ("d3", 0.0)
        else:
            assert len(again) == 8 and "d2" not in again and "d5" not in again
        for i in range(10):
            if f"d{i}" in again and not (what == "update" and i == 3):
                s, dist = again.search_vectors(X[i:i + 1], 1)
                assert (again.ids[s[0, 0]], dist[0, 0]) == (f"d{i}", 0.0)
    finally:
        again.close()
        ex.close()


def test_a_schema_1_store_is_moved_to_the_vector_files(tmp_path):
    ws = tmp_path / "idx"
    ws.mkdir()
    rng = np.random.default_rng(2)
    X = rng.random((6, 3), dtype=np.float32)
    with sqlite3.connect(ws / "index.sqlite") as db:  # the layout schema 1 wrote
        db.execute("CREATE TABLE docs (id TEXT NOT NULL UNIQUE, embedding BLOB NOT NULL, doc TEXT)")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", "1"), ("dim", "3")])
        db.executemany("INSERT INTO docs VALUES (?, ?, ?)",
                       [(f"d{i}", X[i].tobytes(), json.dumps({"text": f"t{i}"}) if i % 2 else None)
                        for i in range(6)])
        db.execute("DELETE FROM docs WHERE id = 'd1'")  # a gap in the rowids
    db.close()
    ex = open_index(tmp_path)
    try:
        assert ex.ids == ["d0", "d2", "d3", "d4", "d5"] and ex.dim == 3
        docs = DocumentArray([Document(id="q", embedding=X[3])])
        ex.search(docs=docs, parameters={"top_k": 1}, header={})
        m = docs[0].matches[0]
        assert (m.id, m.text, m.scores["euclidean"]) == ("d3", "t3", 0.0)
    finally:
        ex.close()


@needs_faiss
@pytest.mark.parametrize("kind, metric", [("ivf", "euclidean"), ("hnsw", "euclidean"), ("ivf", "cosine")])
def test_approximate_search_finds_nearly_all_and_follows_changes(tmp_path, kind, metric):
    X, C = clustered(40000, 32, 100, 4)
    exact = open_index(tmp_path / "exact", durability="normal", metric=metric)
    ann = open_index(tmp_path / kind, durability="normal", index=kind, ann_min=1000, metric=metric)
    ids = [str(i) for i in range(len(X))]
    for ex in (exact, ann):
        ex.add(ids[:30000], X[:30000])
        ex.add(ids[30000:], X[30000:])
    rng = np.random.default_rng(9)
    Q = (C[rng.integers(0, 100, 200)] + rng.standard_normal((200, 32))).astype(np.float32)
    truth, _ = exact.search_vectors(Q, 10)
    found, scores = ann.search_vectors(Q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist())])
    assert recall >= 0.9, recall
    assert np.all(np.diff(scores, axis=1) >= 0)  # exact distances of the candidates, sorted
    _, d_exact = exact.search_vectors(Q, 10)
    assert np.all(scores[:, 0] >= d_exact[:, 0] - 1e-9)  # never closer than the truth
    if kind == "ivf":  # more lists probed: at least as good
        wide, _ = ann.search_vectors(Q, 10, nprobe=64)
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(wide.tolist(), truth.tolist())]) >= recall
    # deleted rows never come back, moved rows are found at their new slots
    gone = [ids[int(s)] for s in truth[:20, 0]]
    for ex in (exact, ann):
        ex.delete(docs=DocumentArray([Document(id=i) for i in dict.fromkeys(gone)]))
    found, _ = ann.search_vectors(Q, 10)
    names = {ann.ids[s] for row in found.tolist() for s in row}
    assert not names & set(gone)
    s, dist = ann.search_vectors(X[-1:], 1)  # the last row moved into a freed slot
    assert ann.ids[s[0, 0]] == ids[-1] and dist[0, 0] == pytest.approx(0.0, abs=1e-9)
    docs = DocumentArray([Document(id="q", embedding=Q[0])])
    with pytest.raises(BadInput, match="nprobe must be a positive integer"):
        ann.search(docs=docs, parameters={"nprobe": 0}, header={})
    ann.search(docs=docs, parameters={"top_k": 3, "nprobe": 4, "ef_search": 32}, header={})
    assert len(docs[0].matches) == 3
    exact.close()
    ann.close()


@needs_faiss
@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_a_saved_approximate_index_is_reopened_not_trained_again(tmp_path, kind, monkeypatch):
    import faiss

    X, C = clustered(6000, 16, 40, 6)
    Q = (C[:30] + 0.1).astype(np.float32)
    ids = [str(i) for i in range(len(X))]
    ex = open_index(tmp_path, durability="normal", index=kind, ann_min=1000)
    ex.add(ids[:5000], X[:5000])
    first = ex.search_vectors(Q, 10)  # builds it, and saves it beside the store
    saved = [n for n in os.listdir(ex._dir) if n.endswith(".faiss")]
    assert saved == [f"ann-{kind}-euclidean-{'nlistauto' if kind == 'ivf' else 'm32-efc64'}-e0-r5000.faiss"]
    ex.close()

    built = []
    real_factory = faiss.index_factory
    monkeypatch.setattr(faiss, "index_factory", lambda *a: built.append(a) or real_factory(*a))
    again = open_index(tmp_path, durability="normal", index=kind, ann_min=1000)
    got = again.search_vectors(Q, 10)
    np.testing.assert_array_equal(got[0], first[0])
    np.testing.assert_array_equal(got[1], first[1])
    again.add(ids[5000:], X[5000:])  # appended rows are added to the opened index, then saved on close
    found, dist = again.search_vectors(X[5990:6000], 1)
    assert [again.ids[s] for s in found[:, 0]] == ids[5990:6000] and not dist.any()
    again.close()
    assert built == []  # never trained again
    assert [n for n in os.listdir(again._dir) if n.endswith(".faiss")] == [saved[0].replace("r5000", "r6000")]

    third = open_index(tmp_path, durability="normal", index=kind, ann_min=1000)
    third.delete(docs=DocumentArray([Document(id="0")]))  # rows move: a saved index no longer fits
    found, _ = third.search_vectors(X[1:2], 1)
    assert third.ids[found[0, 0]] == "1" and len(built) == 1
    assert [n for n in os.listdir(third._dir) if n.endswith(".faiss")] == [saved[0].replace("e0-r5000", "e1-r5999")]
    third.close()


@needs_faiss
def test_a_dump_carries_the_saved_approximate_index_so_its_loader_does_not_train(tmp_path, monkeypatch):
    import faiss

    X, C = clustered(4000, 16, 30, 7)
    ids = [str(i) for i in range(len(X))]
    ex = open_index(tmp_path / "a", durability="normal", index="ivf", ann_min=1000)
    ex.add(ids[:3000], X[:3000])
    ex.search_vectors(X[:1], 1)  # builds and saves it
    ex.add(ids[3000:], X[3000:])
    want = ex.search_vectors(C + 0.1, 10)  # adds the new rows in memory: the dump saves them too
    summary = ex.dump(parameters={"path": str(tmp_path / "dump")})[0].tags
    ex.close()
    assert sorted(n for n in os.listdir(summary["path"]) if n.endswith(".faiss")) == [
        "ann-ivf-euclidean-nlistauto-e0-r4000.faiss"]
    built = []
    real_factory = faiss.index_factory
    monkeypatch.setattr(faiss, "index_factory", lambda *a: built.append(a) or real_factory(*a))
    loaded = open_index(tmp_path / "b", durability="normal", index="ivf", ann_min=1000,
                        dump_path=str(tmp_path / "dump"))
    got = loaded.search_vectors(C + 0.1, 10)
    np.testing.assert_array_equal(got[0], want[0])
    assert built == []
    loaded.close()

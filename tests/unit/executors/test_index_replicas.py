"""`_index` replicas sharing one shard's store, and dumps: in-process instances and real writer processes."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jinad_fab import Document, DocumentArray
from jinad_fab.errors import BadConfig, BadInput
from jinad_fab.executors import index_storage, load_executor
from jinad_fab.executors.index import IndexExecutor
from jinad_fab.executors.loader import OutsideWorkspace, confine

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def replicas(tmp_path):
    """Replicas of one shard: every instance the factory makes opens the same shard home."""
    made = []

    def factory(shard_id=None, shards=1, workspace=None, **kwargs):
        ex = IndexExecutor(metas={"workspace": str(workspace or tmp_path), "name": "idx"},
                           runtime_args={"shard_id": shard_id, "shards": shards, "parallel": 2}, **kwargs)
        made.append(ex)
        return ex

    yield factory
    for ex in made:
        ex.close()


def docs_of(X, prefix="d", start=0):
    return DocumentArray([Document(id=f"{prefix}{start + i}", embedding=x, tags={"n": start + i})
                          for i, x in enumerate(X)])


def top(ex, Q, k=5):
    docs = DocumentArray([Document(id=f"q{i}", embedding=q) for i, q in enumerate(Q)])
    ex.search(docs=docs, parameters={"top_k": k}, header={})
    return [[(m.id, round(m.scores["euclidean"], 5)) for m in d.matches] for d in docs]


def brute(ids, X, Q, k=5):
    D = np.sqrt(((Q.astype(np.float64)[:, None] - X.astype(np.float64)[None]) ** 2).sum(-1))
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return [[(ids[j], round(float(D[i, j]), 5)) for j in row] for i, row in enumerate(order)]


def test_each_replica_answers_exactly_right_after_another_one_wrote(replicas):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 12)).astype(np.float32)
    Q = rng.standard_normal((20, 12)).astype(np.float32)
    a, b = replicas(), replicas()
    a.index(docs=docs_of(X[:2000]))
    ids = [f"d{i}" for i in range(3000)]
    assert len(b) == 2000 and b.dim == 12
    assert top(b, Q) == brute(ids[:2000], X[:2000], Q)
    b.index(docs=docs_of(X[2000:], start=2000))  # the other replica writes: the first one follows
    assert top(a, Q) == brute(ids, X, Q)
    # update and delete move rows in place: the other replica must not answer from stale rows
    X[5] = Q[0]
    a.update(docs=DocumentArray([Document(id="d5", embedding=Q[0], text="moved")]))
    a.delete(docs=DocumentArray([Document(id=i) for i in ids[100:400]]))
    keep = [i for i in range(3000) if not 100 <= i < 400]
    want = brute([ids[i] for i in keep], X[keep], Q)
    assert top(b, Q) == want and top(a, Q) == want
    assert len(b) == len(keep) and "d150" not in b and "d5" in b
    late = replicas()  # a replica started later opens everything written before
    assert top(late, Q) == want
    docs = DocumentArray([Document(id="q", embedding=Q[0])])
    late.search(docs=docs, parameters={"top_k": 1}, header={})
    assert (docs[0].matches[0].id, docs[0].matches[0].text) == ("d5", "moved")


def test_an_approximate_index_follows_the_other_replicas_writes(replicas):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4000, 8)).astype(np.float32)
    a = replicas(index="ivf", ann_min=1000, nprobe=64, nlist=16)
    b = replicas(index="ivf", ann_min=1000, nprobe=64, nlist=16)
    a.index(docs=docs_of(X[:3000]))
    Q = X[2990:3000] + 1e-4
    assert [row[0][0] for row in top(b, Q)] == [f"d{i}" for i in range(2990, 3000)]  # b builds its own
    a.index(docs=docs_of(X[3000:], start=3000))
    Q = X[3990:] + 1e-4
    assert [row[0][0] for row in top(b, Q)] == [f"d{i}" for i in range(3990, 4000)]  # b adds the new rows
    a.delete(docs=DocumentArray([Document(id=f"d{i}") for i in range(3990, 4000)]))
    assert all(row[0][0] not in {f"d{i}" for i in range(3990, 4000)} for row in top(b, Q))


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from jinad_fab import Document, DocumentArray
    from jinad_fab.executors.index import IndexExecutor
    ws, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ex = IndexExecutor(metas={"workspace": ws, "name": "idx"}, runtime_args={"parallel": 2})
    rng = np.random.default_rng(sum(name.encode()))  # (hash() differs per process: seeds could clash)
    print("ready", flush=True)
    sys.stdin.readline()
    for r in range(rounds):
        X = rng.standard_normal((200, 16)).astype(np.float32)
        ex.index(docs=DocumentArray([Document(id=f"{name}-{r}-{j}", embedding=x) for j, x in enumerate(X)]))
        if r % 5 == 4:  # and delete some of its own, which moves other replicas' rows too
            ex.delete(docs=DocumentArray([Document(id=f"{name}-{r}-{j}") for j in range(0, 200, 7)]))
        docs = DocumentArray([Document(id="q", embedding=X[3])])
        ex.search(docs=docs, parameters={"top_k": 1}, header={})
        assert docs[0].matches[0].id == f"{name}-{r}-3", docs[0].matches[0].id
    ex.close()
    print("done", flush=True)
""")


def test_replica_processes_writing_at_once_keep_every_request_whole(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, "15"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for name in ("a", "b", "c")]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # all start writing at the same moment
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.stdout.readline().strip() == "done"
            assert p.wait(60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            p.stdin.close()
            p.stdout.close()
    ex = IndexExecutor(metas={"workspace": str(tmp_path), "name": "idx"})
    try:
        want = {f"{n}-{r}-{j}" for n in "abc" for r in range(15) for j in range(200)
                if not (r % 5 == 4 and j % 7 == 0)}
        assert set(ex.ids) == want and len(ex) == len(want)
        V = ex.vectors()
        slots, dist = ex.search_vectors(V, 1)  # every row is still its own nearest neighbour
        assert dist[:, 0].tolist() == [0.0] * len(V)
        np.testing.assert_array_equal(V[slots[:, 0]], V)
    finally:
        ex.close()


def test_a_dump_loads_into_a_new_store_and_answers_identically(replicas, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1500, 10)).astype(np.float32)
    Q = rng.standard_normal((15, 10)).astype(np.float32)
    shards = [replicas(shard_id=s, shards=2) for s in (0, 1)]
    for s, ex in enumerate(shards):
        ex.index(docs=docs_of(X[s::2], prefix=f"s{s}-"))
    before = [top(ex, Q) for ex in shards]
    dump = tmp_path / "dumps" / "first"
    answers = [ex.dump(parameters={"path": str(dump)}) for ex in shards]
    assert [a[0].tags["count"] for a in answers] == [750, 750]
    assert [a[0].tags["path"] for a in answers] == [str(dump / "0"), str(dump / "1")]
    assert sorted(os.listdir(dump)) == ["0", "1"]  # nothing half-written left beside them
    manifest = json.loads((dump / "1" / "manifest.json").read_text())
    assert (manifest["shard_id"], manifest["shards"], manifest["count"], manifest["dim"]) == (1, 2, 750, 10)
    shards[0].index(docs=docs_of(X[:3], prefix="later-"))  # after the dump: not in it
    other = tmp_path / "elsewhere"
    loaded = [replicas(shard_id=s, shards=2, workspace=other, dump_path=str(dump)) for s in (0, 1)]
    assert [top(ex, Q) for ex in loaded] == before
    assert len(loaded[0]) == 750 and "later-0" not in loaded[0]
    # a replica restarted with the same dump_path keeps what was written since the load
    loaded[1].index(docs=docs_of(X[:2], prefix="new-"))
    loaded[1].close()
    again = replicas(shard_id=1, shards=2, workspace=other, dump_path=str(dump))
    assert "new-1" in again and len(again) == 752


def test_loading_a_dump_reaches_the_replicas_already_running(replicas, tmp_path):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((400, 6)).astype(np.float32)
    source = replicas(workspace=tmp_path / "source")
    source.index(docs=docs_of(X, prefix="dumped-"))
    source.dump(parameters={"path": str(tmp_path / "dump")})
    old = replicas()
    old.index(docs=docs_of(X[:50], prefix="old-"))
    rolled = replicas(dump_path=str(tmp_path / "dump"))  # e.g. the first replica of a rolling update
    for ex in (rolled, old):
        assert len(ex) == 400 and "old-1" not in ex
        assert top(ex, X[:3], k=1) == [[("dumped-0", 0.0)], [("dumped-1", 0.0)], [("dumped-2", 0.0)]]
    old.index(docs=docs_of(X[:1], prefix="after-"))  # the old replica now writes into the loaded store
    assert "after-0" in rolled
    third = replicas(dump_path=str(tmp_path / "dump"))  # the same dump again, while others have it open
    assert "after-0" in third and len(old) == 401
    home = os.path.join(str(tmp_path), "idx")
    assert not os.path.exists(os.path.join(home, "index.sqlite"))  # the replaced store is gone
    assert [n for n in os.listdir(home) if n.startswith("gen-")] == [os.path.basename(rolled._dir)]


def test_a_dump_from_another_shard_count_or_a_missing_one_is_refused(replicas, tmp_path):
    ex = replicas()
    ex.index(docs=docs_of(np.eye(4, dtype=np.float32)))
    ex.dump(parameters={"path": str(tmp_path / "d1")})
    with pytest.raises(BadConfig, match=r"dumped from 1 shard\(s\); this Pod has 2"):
        replicas(shard_id=0, shards=2, workspace=tmp_path / "w2", dump_path=str(tmp_path / "d1"))
    with pytest.raises(BadConfig, match="does not exist"):
        replicas(workspace=tmp_path / "w3", dump_path=str(tmp_path / "nowhere"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(BadConfig, match="holds no dump of shard 0"):
        replicas(workspace=tmp_path / "w4", dump_path=str(tmp_path / "empty"))
    with pytest.raises(BadConfig, match="given twice"):
        IndexExecutor(metas={"workspace": str(tmp_path / "w5")}, dump_path="a", runtime_args={"dump_path": "b"})
    with pytest.raises(BadConfig, match="does not load dumps"):
        load_executor("_pass", runtime_args={"dump_path": str(tmp_path / "d1")})
    with pytest.raises(BadInput, match="path"):
        ex.dump(parameters={})


def test_a_failed_dump_leaves_the_previous_one_whole(replicas, tmp_path, monkeypatch):
    ex = replicas()
    ex.index(docs=docs_of(np.eye(3, dtype=np.float32)))
    first = ex.dump(parameters={"path": str(tmp_path / "d")})[0].tags["dump_id"]
    ex.index(docs=docs_of(np.ones((1, 3), dtype=np.float32), prefix="more-"))

    def disk_full(rows, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(index_storage, "_copy_rows", disk_full)
    with pytest.raises(OSError, match="No space"):
        ex.dump(parameters={"path": str(tmp_path / "d")})
    assert os.listdir(tmp_path / "d") == ["0"]  # no partial directory left, the old dump untouched
    assert json.loads((tmp_path / "d" / "0" / "manifest.json").read_text())["id"] == first
    monkeypatch.undo()
    second = ex.dump(parameters={"path": str(tmp_path / "d")})[0].tags
    assert second["dump_id"] != first and second["count"] == 4 and os.listdir(tmp_path / "d") == ["0"]
    assert len(replicas(workspace=tmp_path / "w", dump_path=str(tmp_path / "d"))) == 4


def test_dumps_and_loads_stay_inside_a_confined_workspace(replicas, tmp_path):
    inside = tmp_path / "ws"
    outside = tmp_path / "outside"
    os.makedirs(outside)
    (inside / "link").parent.mkdir(parents=True)
    os.symlink(outside, inside / "link")
    ex = replicas(workspace=inside)
    ex.index(docs=docs_of(np.eye(2, dtype=np.float32)))
    ex.dump(parameters={"path": str(outside / "d")})  # unconfined (a local Flow): any path it may write
    confine(inside)
    try:
        for attack in ("../outside/x", str(outside / "y"), "link/z"):
            with pytest.raises(OutsideWorkspace):
                ex.dump(parameters={"path": attack})
        with pytest.raises(OutsideWorkspace):
            replicas(workspace=inside / "w2", dump_path=str(outside / "d"))
        assert sorted(os.listdir(outside)) == ["d"]
        ok = ex.dump(parameters={"path": str(inside / "dumps")})[0].tags
        assert ok["path"] == str(inside / "dumps" / "0")
    finally:
        confine(None)


def test_moves_a_dead_replica_committed_but_never_wrote_are_finished_by_the_others(replicas, monkeypatch):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 8)).astype(np.float32)
    ids = [f"d{i}" for i in range(500)]
    a, b = replicas(), replicas()
    a.index(docs=docs_of(X))
    assert top(b, X[:5]) == brute(ids, X, X[:5])

    def dies(moves):  # the replica's process ends between the commit and writing the moved rows
        raise KeyboardInterrupt

    monkeypatch.setattr(a, "_apply_moves", dies)
    with pytest.raises(KeyboardInterrupt):
        a.delete(docs=DocumentArray([Document(id=i) for i in ids[:40]]))
    keep = list(range(40, 500))
    Q = X[460:500]  # the last rows, which moved into the freed slots
    assert top(b, Q) == brute([ids[i] for i in keep], X[keep], Q)

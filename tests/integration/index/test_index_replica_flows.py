"""`_index` replicas and dumps in real Flows: Peas over ZeroMQ, many clients at once, exact answers."""

import threading

import numpy as np
import pytest

from jinad_fab import Document, Flow
from jinad_fab.errors import PeaStartError

pytestmark = pytest.mark.timeout(180)

DIM, K = 16, 5


def brute(ids, X, Q, k=K):
    D = np.sqrt(((Q.astype(np.float64)[:, None] - X.astype(np.float64)[None]) ** 2).sum(-1))
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return [[(ids[j], round(float(D[i, j]), 4)) for j in row] for i, row in enumerate(order)]


def answers(results):
    by_id = {d.id: d for d in results}
    return [[(m.id, round(m.scores["euclidean"], 4)) for m in by_id[f"q{i}"].matches] for i in range(len(by_id))]


def queries(Q):
    return [Document(id=f"q{i}", embedding=q) for i, q in enumerate(Q)]


def in_threads(n, work):
    """Run work(i) in n threads at once; re-raise the first failure."""
    errors = []

    def run(i):
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


def test_two_shards_of_two_replicas_answer_exactly_to_many_clients(tmp_path):
    rng = np.random.default_rng(7)
    clients, per_client = 8, 300
    X = rng.standard_normal((clients * per_client, DIM)).astype(np.float32)
    ids = [f"c{i // per_client}-{i % per_client}" for i in range(len(X))]
    f = Flow(workspace=str(tmp_path)).add(name="vec", uses="_index", shards=2, parallel=2)
    with f:
        def write_then_read(c):
            # each client indexes its own Documents, and every search right after finds them, whichever
            # replica of each shard took the write and whichever answers the search
            with f.client() as client:
                for b in range(c * per_client, (c + 1) * per_client, 50):
                    rows = range(b, b + 50)
                    client.index([Document(id=ids[i], embedding=X[i]) for i in rows], request_size=25)
                    got = client.search([Document(id=f"q{j}", embedding=X[i]) for j, i in enumerate(rows)],
                                        parameters={"top_k": 1}, request_size=10)
                    assert sorted((d.matches[0].id, d.matches[0].scores["euclidean"]) for d in got) == \
                        sorted((ids[i], 0.0) for i in rows)

        in_threads(clients, write_then_read)
        Q = rng.standard_normal((40, DIM)).astype(np.float32)
        want = brute(ids, X, Q)

        def read(c):
            with f.client() as client:
                for _ in range(5):
                    assert answers(client.search(queries(Q), parameters={"top_k": K}, request_size=8)) == want

        in_threads(clients, read)


def test_a_replica_started_later_sees_earlier_writes_and_the_others_see_its_own(tmp_path):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((600, DIM)).astype(np.float32)
    ids = [f"d{i}" for i in range(600)]
    Q = rng.standard_normal((20, DIM)).astype(np.float32)
    first = Flow(workspace=str(tmp_path)).add(name="vec", uses="_index", shards=2, parallel=2)
    with first:
        first.index([Document(id=i, embedding=x) for i, x in zip(ids[:400], X[:400])])
        # more replicas of the same shards, started after the writes (the same Pod in a second Flow)
        later = Flow(workspace=str(tmp_path)).add(name="vec", uses="_index", shards=2)
        with later:
            assert answers(later.search(queries(Q), parameters={"top_k": K})) == brute(ids[:400], X[:400], Q)
            later.index([Document(id=i, embedding=x) for i, x in zip(ids[400:], X[400:])])
            later.delete(ids[:100])
            want = brute(ids[100:], X[100:], Q)
            for _ in range(4):  # every replica of the first Flow, whichever answers
                assert answers(first.search(queries(Q), parameters={"top_k": K}, request_size=5)) == want
            assert answers(later.search(queries(Q), parameters={"top_k": K})) == want


def test_a_dump_loaded_by_a_new_flow_answers_identically(tmp_path):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((1000, DIM)).astype(np.float32)
    Q = rng.standard_normal((30, DIM)).astype(np.float32)
    dump = tmp_path / "dump"
    source = Flow(workspace=str(tmp_path / "a")).add(name="vec", uses="_index", shards=2, parallel=2)
    with source:
        source.index([Document(id=f"d{i}", embedding=x, tags={"i": i}) for i, x in enumerate(X)])
        summary = source.post("/dump", parameters={"path": str(dump)})
        before = answers(source.search(queries(Q), parameters={"top_k": K}))
        source.index([Document(id="after-the-dump", embedding=Q[0])])
    assert sorted((d.tags["shard_id"], d.tags["shards"], d.tags["path"]) for d in summary) == \
        [(0, 2, str(dump / "0")), (1, 2, str(dump / "1"))]
    assert sum(d.tags["count"] for d in summary) == 1000
    assert before == brute([f"d{i}" for i in range(1000)], X, Q)
    loaded = Flow(workspace=str(tmp_path / "b")).add(name="vec", uses="_index", shards=2, parallel=2,
                                                     dump_path=str(dump))
    with loaded:
        got = loaded.search(queries(Q), parameters={"top_k": K})
        assert answers(got) == before
        assert all(m.tags["i"] == int(m.id[1:]) for d in got for m in d.matches)
    wrong = Flow(workspace=str(tmp_path / "c")).add(name="vec", uses="_index", shards=3, dump_path=str(dump))
    with pytest.raises(PeaStartError, match=r"dumped from 2 shard\(s\); this Pod has 3"):
        with wrong:
            pass


def test_scaling_the_index_while_clients_search_keeps_every_answer_exact(tmp_path):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((800, DIM)).astype(np.float32)
    ids = [f"d{i}" for i in range(800)]
    Q = rng.standard_normal((12, DIM)).astype(np.float32)
    f = Flow(workspace=str(tmp_path)).add(name="vec", uses="_index", shards=2)
    with f:
        f.index([Document(id=i, embedding=x) for i, x in zip(ids[:500], X[:500])])
        want = brute(ids[:500], X[:500], Q)
        stop = threading.Event()
        done, failed = [], []

        def search_until_stopped(c):
            with f.client() as client:
                while not stop.is_set():
                    assert answers(client.search(queries(Q), parameters={"top_k": K}, request_size=4)) == want
                    done.append(c)

        def searching():
            try:
                in_threads(6, search_until_stopped)
            except BaseException as exc:  # noqa: BLE001 - checked by the test thread
                failed.append(exc)

        clients = threading.Thread(target=searching)
        clients.start()
        try:
            f.scale("vec", replicas=3)  # new replicas open the shards' stores and answer at once
            f.scale("vec", replicas=2)
        finally:
            stop.set()
            clients.join(120)
        assert not failed, failed[0]
        assert len(done) >= 6
        f.index([Document(id=i, embedding=x) for i, x in zip(ids[500:], X[500:])], request_size=20)
        want = brute(ids, X, Q)

        def read(c):
            with f.client() as client:
                for _ in range(3):  # every replica answers with the writes made after the scaling
                    assert answers(client.search(queries(Q), parameters={"top_k": K}, request_size=3)) == want

        in_threads(4, read)

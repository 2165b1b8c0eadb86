"""A sharded Pod that loses a shard for good (issue 16), with real Pea processes: reads answer from
the shards left and name the missing one in their header (Client, HTTP JSON, HTTP header), writes
that need it fail with PodDied naming it, requests the shard held when it died get an answer, and
once the shard has a replica again the answers are whole and carry no header."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import numpy as np
import pytest

from jinad_fab import Document, Flow
from jinad_fab.errors import PodDied
from jinad_fab.runtime.pea import shard_of

from ._shard_execs import embed

pytestmark = pytest.mark.timeout(120)

EXECS = os.path.join(os.path.dirname(__file__), "_shard_execs.py")


def brute(ids: list[str], texts: list[str], query: str, k: int) -> list[str]:
    X = np.stack([embed(t) for t in texts]).astype(np.float64)
    d = ((X - embed(query).astype(np.float64)) ** 2).sum(1)
    return [ids[i] for i in np.argsort(d, kind="stable")[:k]]


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_an_index_shard_killed_for_good_leaves_partial_reads_and_failing_writes(tmp_path):
    ids = [f"doc-{i}" for i in range(60)]
    texts = [f"document number {i}" for i in range(60)]
    queries = [f"query {j}" for j in range(6)]
    k = 5
    f = (Flow(workspace=str(tmp_path))
         .add(name="enc", uses="HashEncoder", py_modules=[EXECS])
         .add(name="idx", uses="_index", shards=2, restart="never"))
    with f:
        f.index([Document(id=i, text=t) for i, t in zip(ids, texts)], request_size=20)
        whole = f.search([Document(id=f"q{j}", text=q) for j, q in enumerate(queries)], parameters={"top_k": k})
        assert [[m.id for m in d.matches] for d in whole] == [brute(ids, texts, q, k) for q in queries]

        victim = f._running["idx"].peas[1][0]
        _kill(victim.pid)
        victim.wait(10)

        # reads: the other shard answers, exactly over its own Documents, and the answer says what is missing
        left = [(i, t) for i, t in zip(ids, texts) if shard_of(i, 2) == 0]
        assert 0 < len(left) < len(ids)
        seen: list[list[str]] = []
        got = f.search([Document(id=f"q{j}", text=q) for j, q in enumerate(queries)], parameters={"top_k": k},
                       on_done=lambda r: seen.append(r.missing_shards), timeout=30)
        assert seen == [["idx/shard-1"]]
        want = [brute([i for i, _ in left], [t for _, t in left], q, k) for q in queries]
        assert [[m.id for m in d.matches] for d in got] == want

        http = f"http://127.0.0.1:{f.gateway_ports['http_port']}"
        r = httpx.post(f"{http}/search", json={"data": [{"id": "q0", "text": queries[0]}],
                                                "parameters": {"top_k": k}}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["header"]["missing_shards"] == ["idx/shard-1"]
        assert r.headers["x-missing-shards"] == "idx/shard-1"
        assert [m["id"] for m in r.json()["data"][0]["matches"]] == want[0]
        with f.client(protocol="http") as c:  # the Client over HTTP reads the same header
            seen.clear()
            got = c.search(Document(id="q0", text=queries[0]), parameters={"top_k": k},
                           on_done=lambda r: seen.append(r.missing_shards))
        assert seen == [["idx/shard-1"]] and [m.id for m in got[0].matches] == want[0]

        # writes: one that needs the missing shard fails naming it, and nothing of it is applied
        to_1 = next(f"new-{n}" for n in range(100) if shard_of(f"new-{n}", 2) == 1)
        to_0 = next(f"new-{n}" for n in range(100) if shard_of(f"new-{n}", 2) == 0)
        with pytest.raises(PodDied) as err:
            f.index([Document(id=to_0, text="brand new zero"), Document(id=to_1, text="brand new one")],
                    timeout=30)
        assert err.value.pod == "idx" and err.value.shards == ["idx/shard-1"]
        assert "idx/shard-1" in str(err.value)
        r = httpx.post(f"{http}/index", json={"data": [{"id": to_1, "text": "x"}]}, timeout=30)
        assert r.status_code == 503 and "idx/shard-1" in r.json()["detail"]
        hit = f.search(Document(id="q", text="brand new zero"), parameters={"top_k": 1}, timeout=30)
        assert hit[0].matches[0].id != to_0
        # ...and one whose Documents all belong to the shard left goes through
        f.index(Document(id=to_0, text="brand new zero"), timeout=30)
        hit = f.search(Document(id="q", text="brand new zero"), parameters={"top_k": 1}, timeout=30)
        assert hit[0].matches[0].id == to_0

        # the shard comes back (a replica started on its store): answers are whole again, no header
        f.scale("idx", 1)
        seen.clear()
        got = f.search([Document(id=f"q{j}", text=q) for j, q in enumerate(queries)], parameters={"top_k": k},
                       on_done=lambda r: seen.append(r.missing_shards), timeout=30)
        assert seen == [[]]
        ids2, texts2 = ids + [to_0], texts + ["brand new zero"]
        assert [[m.id for m in d.matches] for d in got] == [brute(ids2, texts2, q, k) for q in queries]
        assert "x-missing-shards" not in httpx.post(f"{http}/search", json={"data": [{"text": "q"}]}).headers


def test_requests_a_shard_held_when_it_went_missing_are_answered(tmp_path):
    """Held by a shard whose host is then LOST (what the Flow's lost-host watch reports), and held by
    a shard whose Pea dies: reads answer from the other shard naming it, writes fail naming it."""
    mark = str(tmp_path / "held")
    f = Flow().add(name="s", uses="ShardHold", py_modules=[EXECS], shards=2, restart="never",
                   polling={"/lookup": "id"})
    with f:

        def send_both() -> tuple[dict, list[threading.Thread]]:
            answers: dict[str, object] = {}

            def send(on: str) -> None:
                with f.client() as c:
                    try:
                        answers[on] = c.post(on, Document(id=f"q-{on}"), parameters={"hold": ["1"], "mark": mark},
                                             on_done=lambda r: answers.setdefault(on + ":header", r.missing_shards),
                                             timeout=30)
                    except PodDied as exc:
                        answers[on] = exc

            senders = [threading.Thread(target=send, args=(on,)) for on in ("/search", "/index")]
            for t in senders:
                t.start()
            deadline = time.monotonic() + 30  # both planned and sent (shard 1 holds them)
            while f._gateway_cmd({"cmd": "status"})["pending"] < 2 or not os.path.exists(f"{mark}.1"):
                assert time.monotonic() < deadline, "the requests did not reach the shard"
                time.sleep(0.02)
            return answers, senders

        def answered(answers: dict, senders: list[threading.Thread]) -> None:
            for t in senders:
                t.join(40)
            assert not any(t.is_alive() for t in senders), answers
            assert answers["/search:header"] == ["s/shard-1"]
            assert [m.id for m in answers["/search"][0].matches] == ["shard0"]
            assert isinstance(answers["/index"], PodDied) and answers["/index"].shards == ["s/shard-1"], answers

        # 1. its host is reported LOST while the shard holds them (its Pea, here, just sleeps on)
        answers, senders = send_both()
        assert f._shards_missing("s", {"s/shard-1": 1}, "its host is LOST", why="lost") is None
        answered(answers, senders)
        f._shards_back("s", ["s/shard-1"])

        # 2. the shard's Pea dies while it holds them (they wait behind the ones still held above)
        answers, senders = send_both()
        with open(f"{mark}.1") as fh:
            _kill(int(fh.read()))
        for t in senders:
            t.join(40)
        assert answers["/search:header"] == ["s/shard-1"]
        assert [m.id for m in answers["/search"][0].matches] == ["shard0"]
        assert isinstance(answers["/index"], PodDied) and "s/shard-1" in str(answers["/index"]), answers

        # a read routed by id keeps every Document: the missing shard's go to the shard left
        seen: list[list[str]] = []
        ids = [f"doc-{i}" for i in range(12)]
        got = f.post("/lookup", [Document(id=i) for i in ids], on_done=lambda r: seen.append(r.missing_shards),
                     timeout=30)
        assert seen == [["s/shard-1"]] and {shard_of(i, 2) for i in ids} == {0, 1}
        assert got.ids == ids and [d.tags["shard"] for d in got] == [0] * len(ids)

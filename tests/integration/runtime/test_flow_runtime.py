"""Real Flows: real Pea processes, real ZeroMQ sockets on loopback, a real HTTP gateway."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import numpy as np
import psutil
import pytest

from jinad_fab import AsyncClient, Document, DocumentArray, Flow
from jinad_fab.errors import BadInput, PeaStartError, PodDied, RequestError

pytestmark = pytest.mark.timeout(90)


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_chain_of_pods_keeps_every_document_in_order(execs):
    before = _children()
    f = Flow().add(name="a", **execs("Stamp")).add(name="b", uses="_pass").add(name="c", **execs("Stamp"))
    with f:
        assert len(_children() - before) == 4  # 3 Peas + gateway
        docs = [Document(id=str(i), text=f"t{i}") for i in range(1050)]
        got = f.index(docs, request_size=100)
    assert got.ids == [str(i) for i in range(1050)]
    assert [s.split(":")[0] for s in got[0].tags["seen_by"]] == ["a", "c"]
    assert _children() - before == set()


def test_parallel_replicas_share_the_load(execs):
    with Flow().add(name="s", parallel=3, **execs("Stamp")) as f:
        got = f.search([Document() for _ in range(60)], request_size=1, parameters={"sleep": 0.01})
    pids = {d.tags["seen_by"][0] for d in got}
    assert len(pids) == 3


def test_needs_join_merges_branches(execs):
    f = (Flow().add(name="left", **execs("Stamp"))
         .add(name="right", needs="gateway", **execs("Stamp"))
         .needs(["left", "right"], name="join"))
    with f:
        got = f.index([Document(id="x"), Document(id="y")])
    assert got.ids == ["x", "y"]
    assert sorted(s.split(":")[0] for s in got["x"].tags["seen_by"]) == ["left"]  # first branch wins tags
    # both branches ran: the join waited for two parts of every request
    with f:
        got = f.post("/x", [Document(id="z")])
        assert got.ids == ["z"]


def test_join_in_front_of_replicas_uses_a_head(execs):
    f = (Flow().add(name="p1", **execs("Stamp")).add(name="p2", needs="gateway", **execs("Stamp"))
         .add(name="rep", needs=["p1", "p2"], parallel=2, **execs("Stamp")))
    with f:
        got = f.index([Document(id=str(i)) for i in range(20)], request_size=2)
    assert got.ids == [str(i) for i in range(20)]
    assert all(any(s.startswith("rep:") for s in d.tags["seen_by"]) for d in got)


def test_shards_split_writes_by_id_and_merge_searches(execs):
    from jinad_fab.runtime.pea import shard_of

    with Flow().add(name="idx", shards=3, **execs("ShardEcho")) as f:
        docs = [Document(id=f"d{i}") for i in range(30)]
        written = f.index(docs, request_size=30)
        assert written.ids == [d.id for d in docs]  # original order restored
        assert all(d.tags["shard"] == shard_of(d.id, 3) for d in written)
        found = f.search([Document(id="q")], parameters={"top_k": 2})
    assert found["q"].matches.ids == ["shard0", "shard1"]


def test_executor_error_names_the_pod_and_the_flow_keeps_serving(execs):
    with Flow().add(name="pre", uses="_pass").add(name="boom", **execs("Boom")).add(name="post", uses="_pass") as f:
        with pytest.raises(RequestError) as info:
            f.index([Document(id="doc-1")])
        assert info.value.pod == "boom" and info.value.exc_type == "ValueError"
        assert "doc-1" in info.value.message and "Traceback" in info.value.traceback
        assert f.search([Document()])[0].tags["ok"] is True


def test_callbacks_get_every_response(execs):
    done, errors, always = [], [], []
    with Flow().add(name="boom", **execs("Boom")) as f:
        f.search([Document() for _ in range(25)], request_size=10, on_done=done.append,
                 on_always=always.append)
        f.index([Document() for _ in range(25)], request_size=10, on_error=errors.append,
                on_always=always.append)
    assert [len(r.docs) for r in done] == [10, 10, 5]
    assert len(errors) == 3 and all(r.error["pod"] == "boom" for r in errors)
    assert len(always) == 6


def test_a_pea_dying_mid_request_fails_the_request_naming_the_pod(execs):
    before = _children()
    f = Flow().add(name="mortal", **execs("Die"))
    with f:
        t0 = time.monotonic()
        with pytest.raises(PodDied) as info:
            f.post("/x", [Document()], parameters={"die": True})
        assert info.value.pod == "mortal"
        assert time.monotonic() - t0 < 30  # an answer, not a hang (the timeout guard)
        with pytest.raises(PodDied):  # and later requests fail fast too
            f.post("/x", [Document()])
    assert _children() - before == set()


def test_unknown_uses_fails_start_naming_the_pod_and_leaves_nothing():
    before = _children()
    with pytest.raises(PeaStartError) as info:
        with Flow().add(name="ok", uses="_pass").add(name="broken", uses="NoSuchExecutor"):
            pass
    assert info.value.pod == "broken" and "NoSuchExecutor" in str(info.value)
    time.sleep(0.2)
    assert _children() - before == set()


def test_generators_and_plain_values_as_inputs(execs):
    with Flow().add(**execs("Encode")) as f:
        got = f.index((f"text {'x' * i}" for i in range(7)), request_size=3)
        assert [d.embedding[0] for d in got] == [len(f"text {'x' * i}") for i in range(7)]
        assert got.embeddings.shape == (7, 2)
        replaced = f.post("/replace", [Document(id="a")])
        assert replaced.ids == ["a!"] and replaced[0].text == "new"
        with pytest.raises(BadInput):
            f.index([object()])
        with pytest.raises(BadInput):
            f.index(["a"], request_size=0)


def test_http_gateway_speaks_json(execs):
    with Flow(protocol="http").add(name="enc", **execs("Encode")) as f:
        url = f"http://127.0.0.1:{f.port_expose}"
        r = httpx.post(url + "/index", json={"data": [{"id": "a", "text": "abc"}], "parameters": {}})
        assert r.status_code == 200
        body = r.json()
        assert body["data"][0]["id"] == "a" and body["data"][0]["embedding"] == [3.0, 1.0]
        assert body["header"]["ep"] == "/index"
        r = httpx.post(url + "/index", content=b"{not json")
        assert r.status_code == 400 and "invalid JSON" in r.json()["detail"]
        r = httpx.post(url + "/index", json={"data": [{"embedding": "abc"}]})
        assert r.status_code == 422
        assert httpx.get(url + "/alive").json()["alive"] is True
        # the Flow's own client over HTTP
        got = f.index([Document(id="b", text="ab")])
        assert got["b"].embedding.tolist() == [2.0, 1.0]


def test_http_gateway_reports_executor_errors(execs):
    with Flow(protocol="http").add(name="boom", **execs("Boom")) as f:
        r = httpx.post(f"http://127.0.0.1:{f.port_expose}/index", json={"data": [{"id": "z"}]})
        assert r.status_code == 500 and "'boom'" in r.json()["detail"]
        with pytest.raises(RequestError) as info:
            f.index([Document(id="z")])
        assert info.value.pod == "boom"


def test_async_client(execs):
    async def go(port):
        c = AsyncClient(port=port)
        got = await c.index([Document(text="ab"), Document(text="abcd")], request_size=1)
        streamed = [r async for r in c.stream("/index", [Document(text="x")] * 5, request_size=2)]
        return got, streamed

    with Flow().add(**execs("Encode")) as f:
        got, streamed = asyncio.run(go(f.port_expose))
    assert sorted(d.embedding[0] for d in got) == [2.0, 4.0]
    assert [len(r.docs) for r in streamed] == [2, 2, 1]


def test_flow_from_yaml_runs(tmp_path, execs):
    (tmp_path / "flow.yml").write_text(textwrap.dedent(f"""
        !Flow
        version: 1
        pods:
          - name: enc
            uses: Encode
            py_modules: [{execs('Encode')['py_modules'][0]}]
            method: add
          - name: log
            uses: _logforward
            parallel: 2
    """))
    with Flow.load_config(str(tmp_path / "flow.yml")) as f:
        got = f.index([Document(text="four")])
    assert got[0].embedding.tolist() == [4.0, 1.0]


def test_no_orphans_when_the_flow_process_is_sigkilled(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from jinad_fab import Flow
        f = Flow().add(uses="_logforward").add(uses="_pass", parallel=2, shards=2)
        f.start()
        print("READY", flush=True)
        time.sleep(600)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline().strip() == b"READY"
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert len(kids) == 1 + 1 + 4 + 1  # _logforward, shard head, 2x2 replicas, gateway
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        gone, alive = psutil.wait_procs(kids, timeout=10)
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def test_embeddings_survive_three_hops_bit_exact():
    m = np.random.default_rng(1).standard_normal((500, 64)).astype(np.float32)
    docs = DocumentArray(Document() for _ in range(500))
    docs.embeddings = m
    with Flow().add(uses="_pass").add(uses="_logforward").add(uses="_pass") as f:
        got = f.index(docs, request_size=64)
    assert np.array_equal(got.embeddings, m)


def test_a_script_that_starts_its_flow_at_import_fails_clearly_instead_of_recursing(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        from jinad_fab import Executor, Flow, requests

        class Mine(Executor):
            @requests
            def go(self, docs):
                pass

        with Flow().add(name="mine", uses=Mine) as f:
            f.index(["x"])
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    assert "PeaStartError" in out.stderr and "if __name__ == '__main__'" in out.stderr
    assert "'mine'" in out.stderr

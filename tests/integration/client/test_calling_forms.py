"""The calling forms Jina 1.x/2.x users type, over real Flows (real Peas, real ZeroMQ and HTTP)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import httpx
import numpy as np
import psutil
import pytest

from jinad_fab import Document, Flow
from jinad_fab.document import Score
from jinad_fab.errors import BadInput

pytestmark = pytest.mark.timeout(180)

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ECHO = {"uses": "Echo", "py_modules": [str(HERE / "_echo.py")]}


def guardians() -> list[Document]:
    return [Document(id=i, embedding=np.array(e)) for i, e in
            (("🐲", [0, 0, 0]), ("🐦", [1, 0, 0]), ("🐢", [0, 1, 0]), ("🐯", [0, 0, 1]))]


def test_keyword_arguments_are_endpoint_parameters():
    got = []
    with Flow().add(**ECHO) as f:
        out = f.search([Document(text="q")], top_k=3, metric="cosine", on_done=got.append)
        assert out[0].tags["parameters"] == {"top_k": 3, "metric": "cosine"}
        assert got and got[0].docs[0].tags["parameters"] == {"top_k": 3, "metric": "cosine"}
        # the Jina 2.x dict form and the keyword form together
        out = f.post("/search", Document(text="q"), parameters={"limit": 1}, top_k=2)
        assert out[0].tags["parameters"] == {"limit": 1, "top_k": 2}
        with pytest.raises(BadInput, match="given twice"):
            f.search(Document(text="q"), parameters={"top_k": 1}, top_k=2)
        with pytest.raises(BadInput, match="did you mean `on_done=`"):
            f.search(Document(text="q"), on_don=print)


def test_top_k_as_a_keyword_cuts_the_matches_of_the_index(tmp_path):
    with Flow(workspace=str(tmp_path)).add(uses="_index") as f:
        f.index(guardians())
        assert [len(f.search(guardians()[0], top_k=k)[0].matches) for k in (1, 2, 3)] == [1, 2, 3]


def test_index_with_on_done_print(capsys):
    with Flow().add(**ECHO) as f:
        f.index([Document(text="a"), Document(text="b")], on_done=print)
    out = capsys.readouterr().out
    assert out.startswith("<Response /index ") and out.rstrip().endswith("ok, 2 Documents>"), out


def test_post_to_a_custom_endpoint():
    with Flow().add(**ECHO) as f:
        assert f.post("/custom", [Document(text="x")])[0].tags["endpoint"] == "/custom"
        assert f.post(on="/custom", inputs=Document(text="x"))[0].tags["endpoint"] == "/custom"
        assert f.post("/other", Document(text="x"))[0].tags["endpoint"] == "default"


def test_update_and_delete_by_ids_or_documents(tmp_path):
    docs = guardians()
    with Flow(workspace=str(tmp_path)).add(uses="_index") as f:
        f.index(docs)
        f.update(Document(id="🐲", embedding=np.array([0, 0, 1])))  # one Document, not a list
        near_tiger = f.search(docs[3], top_k=2)[0].matches
        assert {m.id: float(m.scores["euclidean"]) for m in near_tiger} == {"🐲": 0.0, "🐯": 0.0}
        f.delete(["🐦", Document(id="🐢")])  # ids and Documents mixed
        assert sorted(m.id for m in f.search(docs[0], top_k=4)[0].matches) == ["🐯", "🐲"]
        f.delete("🐯")  # a str alone is an id, not a text
        assert [m.id for m in f.search(docs[0], top_k=4)[0].matches] == ["🐲"]


def test_index_lines_from_a_list_and_a_file(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("first line\nsecond line\n", encoding="utf-8")
    with Flow().add(**ECHO) as f:
        out = f.index_lines(lines=["hello", "jina"])
        assert [(d.text, d.tags["endpoint"]) for d in out] == [("hello", "default"), ("jina", "default")]
        assert f.index_lines(filepath=str(path)).texts == ["first line", "second line"]
        assert f.search_lines(lines=["a", "b", "c"], size=2).texts == ["a", "b"]
        with pytest.raises(BadInput, match="index_ndjson"):
            f.index_lines(lines=['{"text": "x"}'], line_format="json")
        with pytest.raises(BadInput, match="lines=\\[text\\]"):
            f.index_lines(lines="hello")


def test_content_chooses_text_buffer_or_blob_and_survives_the_flow():
    docs = [Document(id="t", content="hello"), Document(id="b", content=b"\x00\x01"),
            Document(id="a", content=np.arange(4, dtype=np.float32))]
    with Flow().add(**ECHO) as f:
        for protocol in ("native", "http"):
            with f.client(protocol=protocol) as c:
                out = c.post("/index", docs)
            assert [d.tags["fields"] for d in out] == [["text"], ["buffer"], ["blob"]]
            assert out["t"].content == "hello" and out["b"].content == b"\x00\x01"
            assert out["a"].content.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_scores_read_as_floats_and_as_named_scores_and_the_wire_is_unchanged(tmp_path):
    with Flow(workspace=str(tmp_path)).add(uses="_index") as f:
        f.index(guardians())
        for protocol in ("native", "http"):
            with f.client(protocol=protocol) as c:
                (hit,) = c.search(guardians()[0], top_k=2)
            first, second = hit.matches
            assert isinstance(first.scores["euclidean"], Score)
            assert first.scores["euclidean"] == 0.0 and first.scores["euclidean"].value == 0.0
            assert second.scores["euclidean"].value == pytest.approx(1.0) and second.score.value == pytest.approx(1.0)
            assert second.scores["euclidean"] + 1 == pytest.approx(2.0)
        # what an HTTP client sees: a plain JSON number, as before
        port = f.gateway_ports["http_port"]
        body = httpx.post(f"http://127.0.0.1:{port}/search", json={
            "data": [{"id": "q", "embedding": [0, 0, 0]}], "parameters": {"top_k": 2}}, timeout=30).json()
        assert [m["scores"] for m in body["data"][0]["matches"]] == [{"euclidean": 0.0}, {"euclidean": 1.0}]


def test_show_progress_draws_a_bar_on_stderr(capfd):
    with Flow().add(**ECHO) as f:
        f.index((Document(text=str(i)) for i in range(30)), request_size=10, show_progress=True)
        f.search([Document(text="q")] * 5, show_progress=True, top_k=1)
    err = capfd.readouterr().err
    assert "/index" in err and "30 Documents" in err and "3 requests" in err, err
    assert "/search" in err and "5 Documents" in err, err


BLOCKING = textwrap.dedent("""
    import sys
    from jinad_fab import Flow
    with Flow(protocol="http").add(uses="_pass") as f:
        print(f.port_expose, flush=True)
        f.block()
        print("unblocked", flush=True)
    print("closed", flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_block_serves_until_a_signal_then_closes_the_flow(tmp_path, sig):
    script = tmp_path / "serve.py"
    script.write_text(BLOCKING)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        port = int(proc.stdout.readline())
        r = httpx.post(f"http://127.0.0.1:{port}/index", json={"data": [{"text": "still serving"}]}, timeout=30)
        assert r.status_code == 200 and r.json()["data"][0]["text"] == "still serving"
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert kids
        assert proc.poll() is None  # blocked, serving
        proc.send_signal(sig)
        assert proc.wait(30) == 0, proc.stderr.read()
        assert proc.stdout.read().split() == ["unblocked", "closed"]
        assert psutil.wait_procs(kids, timeout=10)[1] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_block_ends_with_the_pod_that_died(tmp_path):
    import threading

    from jinad_fab.errors import PodDied

    f = Flow().add(uses="_pass", name="victim")
    stop = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            f.block(stop)
        except PodDied as exc:
            errors.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        import time

        deadline = time.monotonic() + 60
        while f._gateway is None or "victim" not in f._running:  # started by block()
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.05)
        os.kill(f._running["victim"].processes[0].pid, signal.SIGKILL)
        t.join(30)
        assert not t.is_alive()
        assert errors and "victim" in str(errors[0])
        assert f._gateway is None  # block() started it, so block() closed it
    finally:
        stop.set()
        t.join(10)


def test_the_jina2_crud_example_runs_verbatim(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "crud" / "jina2.py")], capture_output=True,
                         text=True, timeout=150, cwd=tmp_path, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4, out.stdout
    assert lines[0].startswith("<Response /index ") and lines[0].endswith("ok, 4 Documents>")

    def matches(line: str) -> list[tuple[str, float]]:
        import re

        return [(i, float(s)) for i, s in re.findall(r"<Document id='(.)'.*?scores=\{'euclidean': ([0-9.]+)\}>", line)]

    # search: the Dragon itself at 0, then two neighbours at 1 (ties keep the order they were indexed in)
    assert matches(lines[1]) == [("🐲", 0.0), ("🐦", 1.0), ("🐢", 1.0)]
    assert "Azure Dragon" in lines[1] and lines[1].startswith("<DocumentArray len=3 ")
    # update moved the Dragon onto the Tiger
    assert sorted(matches(lines[2])) == [("🐯", 0.0), ("🐲", 0.0)]
    # delete left two guardians, both at 1 from the origin
    assert sorted(matches(lines[3])) == [("🐯", 1.0), ("🐲", 1.0)]

"""One Flow across several real `jinad` daemons: topologies, uploads, logs, failures, teardown."""

from __future__ import annotations

import os
import textwrap

import httpx
import numpy as np
import pytest

from jinad_fab import Document, DocumentArray, Flow
from jinad_fab.errors import PeaStartError, PodDied
from tests.support.daemons import Daemon, reap

pytestmark = pytest.mark.timeout(240)

ENCODER = textwrap.dedent("""
    import os
    import numpy as np
    from jinad_fab import Executor, requests

    class Tagger(Executor):
        def __init__(self, label="?", **kwargs):
            super().__init__(**kwargs)
            self.label = label

        @requests
        def tag(self, docs, parameters):
            if parameters.get("die"):
                os._exit(9)
            for d in docs:
                d.tags.setdefault("path", []).append(self.label)
                d.tags.setdefault("pids", []).append(os.getpid())
""")


SHARED_TOKEN = "remote-pods-" + os.urandom(8).hex()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Two daemons for the whole module (a start costs ~1.5 s of CPU, and these tests started
    fifteen): `daemons()` hands them out in order within a test. Every Flow here removes what it
    made on its hosts, and `daemons` checks that each test finds them so."""
    base = tmp_path_factory.mktemp("remote-pods")
    started: list[Daemon] = []
    try:
        for i in range(2):
            started.append(Daemon(base / f"jinad{i}", token=SHARED_TOKEN).start())
        yield started
    finally:
        for d in started:
            d.stop()
        for d in started:
            reap(d.home)


@pytest.fixture
def daemons(pool, daemon_factory, monkeypatch):
    """``daemons()``: the next of the module's shared daemons, whose token the Flows find in
    JINAD_TOKEN (as an operator of several local daemons would hand it); ``daemons(token=...)`` or
    ``daemons(own=True)``: a daemon of the test's own (to be killed, or with another token)."""
    monkeypatch.setenv("JINAD_TOKEN", SHARED_TOKEN)
    for d in pool:
        objects = _objects(d)
        assert objects["workspaces"] == [] and [p for p in objects["pods"] if p["state"] == "RUNNING"] == [], (
            "an earlier test left this on a shared daemon", objects)
    handed = iter(pool)

    def make(token: str | None = None, own: bool = False) -> Daemon:
        if token or own:
            return daemon_factory(token=token or SHARED_TOKEN)
        return next(handed)

    return make


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project folder: an Executor module and its YAML config, in a sub-directory."""
    (tmp_path / "proj" / "execs").mkdir(parents=True)
    (tmp_path / "proj" / "execs" / "tagger.py").write_text(ENCODER)
    (tmp_path / "proj" / "tagger.yml").write_text("jtype: Tagger\nwith:\n  label: yml\npy_modules:\n"
                                                  "  - execs/tagger.py\n")
    monkeypatch.chdir(tmp_path / "proj")
    return tmp_path / "proj"


def _host(d) -> str:
    return f"127.0.0.1:{d.port}"


def _tagger(label: str, **kw) -> dict:
    return {"uses": "tagger.yml", "uses_with": {"label": label}, **kw}


def _index_and_search(f: Flow, n: int = 40) -> DocumentArray:
    got = f.index([Document(id=str(i), text=f"doc {i}") for i in range(n)], request_size=7)
    assert got.ids == [str(i) for i in range(n)]
    return got


def _objects(d) -> dict:
    with d.client() as c:
        return {"pods": c.get("/pods").json()["items"], "workspaces": c.get("/workspaces").json()["items"]}


def test_local_remote_local(daemons, project):
    h = daemons()
    f = (Flow().add(name="a", **_tagger("a"))
         .add(name="b", host=_host(h), **_tagger("b"))
         .add(name="c", **_tagger("c")))
    with f:
        got = _index_and_search(f)
        assert got[0].tags["path"] == ["a", "b", "c"]
        assert len(_objects(h)["pods"]) == 1
    left = _objects(h)
    assert all(p["state"] != "RUNNING" for p in left["pods"]) and left["workspaces"] == []


def test_remote_local_remote_shares_one_workspace(daemons, project):
    h = daemons()
    f = (Flow().add(name="a", host=_host(h), **_tagger("a"))
         .add(name="b", **_tagger("b"))
         .add(name="c", host=_host(h), **_tagger("c")))
    with f:
        assert [d.tags["path"] for d in _index_and_search(f, 5)] == [["a", "b", "c"]] * 5
        objs = _objects(h)
        assert len(objs["workspaces"]) == 1
        files = objs["workspaces"][0]["files"]
        assert "tagger.yml" in files and "execs/tagger.py" in files  # directory structure kept


def test_remote_remote_remote_over_two_hosts_and_a_join(daemons, project):
    h1, h2 = daemons(), daemons()
    f = (Flow().add(name="r1", host=_host(h1), **_tagger("r1"))
         .add(name="r2", host=_host(h2), needs="gateway", **_tagger("r2"))
         .add(name="r3", host=_host(h1), needs=["r1", "r2"], **_tagger("r3")))
    with f:
        got = _index_and_search(f, 10)
    assert all(d.tags["path"][-1] == "r3" and d.tags["path"][0] in ("r1", "r2") for d in got)


def test_remote_parallel_replicas_and_http_gateway(daemons, project):
    h = daemons()
    with Flow(protocol="http").add(name="rep", host=_host(h), parallel=2, **_tagger("rep")) as f:
        got = f.post("/x", [Document() for _ in range(30)], request_size=1)
        assert len({d.tags["pids"][0] for d in got}) == 2
        r = httpx.post(f"http://127.0.0.1:{f.port_expose}/index", json={"data": [{"text": "x"}]})
        assert r.status_code == 200 and r.json()["data"][0]["tags"]["path"] == ["rep"]


def test_remote_index_with_shards_gives_exact_results(daemons, project):
    h = daemons()
    rng = np.random.default_rng(3)
    vecs = rng.random((200, 16), dtype=np.float32)
    docs = DocumentArray(Document(id=f"v{i}") for i in range(200))
    docs.embeddings = vecs
    with Flow().add(name="idx", uses="_index", shards=2, host=_host(h)) as f:
        f.index(docs, request_size=50)
        q = DocumentArray([Document(id="q0", embedding=vecs[17]), Document(id="q1", embedding=vecs[123])])
        got = f.search(q, parameters={"top_k": 5})
    d = ((vecs[None, :, :] - q.embeddings[:, None, :]) ** 2).sum(-1)
    for row, doc in zip(np.argsort(d, axis=1)[:, :5], got):
        assert doc.matches.ids == [f"v{i}" for i in row]
    assert got[0].matches[0].id == "v17" and got[0].matches[0].scores["euclidean"] == pytest.approx(0, abs=1e-5)


def test_remote_logs_stream_back_with_the_globe(daemons, project, capfd):
    h = daemons()
    with Flow().add(name="lf", uses="_logforward", host=_host(h)) as f:
        f.index([Document(text="hello")])
        import time

        deadline = time.monotonic() + 10
        err = ""
        while time.monotonic() < deadline and "/index request" not in err:
            time.sleep(0.2)
            err += capfd.readouterr().err
    assert f"🌏 {_host(h)} lf |" in err and "/index request" in err


def test_quiet_remote_logs(daemons, project, capfd):
    h = daemons()
    with Flow(quiet_remote_logs=True).add(name="lf", uses="_logforward", host=_host(h)) as f:
        f.index([Document(text="hello")])
    assert "🌏" not in capfd.readouterr().err


def test_a_host_that_is_down_fails_start_naming_it(daemons, project):
    from tests.support.ports import free_port

    port = free_port()
    with pytest.raises(PeaStartError) as info:
        with Flow().add(name="x", uses="_pass", host=f"127.0.0.1:{port}"):
            pass
    assert f"127.0.0.1:{port}" in str(info.value) and "unreachable" in str(info.value)


def test_a_wrong_token_fails_start_naming_the_host(daemons, project):
    h = daemons(token="s3cret-token")
    with pytest.raises(PeaStartError) as info:
        with Flow(token="wrong").add(name="x", uses="_pass", host=_host(h)):
            pass
    assert _host(h) in str(info.value) and "s3cret" not in str(info.value)
    with Flow(token="s3cret-token").add(name="x", uses="_pass", host=_host(h)) as f:
        assert f.index([Document(id="ok")]).ids == ["ok"]


def test_a_remote_pea_dying_fails_the_request_naming_the_pod(daemons, project):
    h = daemons()
    with Flow().add(name="local", uses="_pass").add(name="far", host=_host(h), **_tagger("far")) as f:
        with pytest.raises(PodDied) as info:
            f.post("/x", [Document()], parameters={"die": True}, timeout=60)
        assert info.value.pod == "far"


def test_teardown_happens_on_exceptions(daemons, project):
    h = daemons()
    with pytest.raises(RuntimeError, match="user code failed"):
        with Flow().add(name="x", host=_host(h), **_tagger("x")):
            assert len(_objects(h)["workspaces"]) == 1
            raise RuntimeError("user code failed")
    assert _objects(h)["workspaces"] == []


GPU_PROBE = textwrap.dedent("""
    import os
    from jinad_fab import Executor, requests

    class GpuProbe(Executor):
        @requests
        def probe(self, docs):
            for d in docs:
                d.tags["cuda"] = os.environ.get("CUDA_VISIBLE_DEVICES")
                d.tags["env"] = os.environ.get("MY_SETTING")
""")


def test_every_argument_reaches_the_remote_side(daemons, project):
    """gpus (no GPU here: the process runtime's CUDA_VISIBLE_DEVICES is what would reach CUDA), env,
    uses_with and shards all arrive on the host."""
    (project / "probe.py").write_text(GPU_PROBE)
    h = daemons()
    f = (Flow().add(name="gpu", uses="GpuProbe", py_modules=["probe.py"], host=_host(h), gpus="1,3",
                    env={"MY_SETTING": "on"})
         .add(name="tag", host=_host(h), shards=2, **_tagger("with-arg")))
    with f:
        got = f.post("/x", [Document(id=f"d{i}") for i in range(6)])
        pods = _objects(h)["pods"]
    assert {d.tags["cuda"] for d in got} == {"1,3"} and {d.tags["env"] for d in got} == {"on"}
    assert all(d.tags["path"] == ["with-arg"] for d in got)
    gpu_pod = next(p for p in pods if p["args"]["name"] == "gpu")
    assert gpu_pod["args"]["gpus"] == "1,3"
    assert next(p for p in pods if p["args"]["name"] == "tag")["args"]["shards"] == 2


def test_a_dropped_log_stream_resumes_from_its_last_line(daemons, project, capfd):
    """SIGKILL the host's daemon mid-Flow and start it again: the Pod is re-adopted, the Flow keeps
    serving, and the log stream picks up where it broke, with no line printed twice."""
    import re
    import time

    h = daemons(own=True)  # killed below

    def wait_for(pattern: str, err: list[str]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            err.append(capfd.readouterr().err)
            if re.search(pattern, "".join(err)):
                return
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never appeared in: {''.join(err)[-2000:]}")

    err: list[str] = []
    with Flow().add(name="lf", uses="_logforward", host=_host(h)) as f:
        first = f.index([Document(text="one")])
        wait_for(r"lf \| lf: /index request", err)
        h.kill()
        h.start()  # same port and home: the daemon re-adopts the running Pod
        second = f.index([Document(text="two")])  # the data path never went through the daemon
        assert first[0].text == "one" and second[0].text == "two"
        wait_for(r"lf \| lf: /index request .*\n(.*\n)*.*lf \| lf: /index request", err)
    lines = [x for x in "".join(err).splitlines() if "lf | lf: /index request" in x]
    assert len(lines) == 2 and len(set(lines)) == 2, lines


TWO_WAYS = textwrap.dedent("""
    from jinad_fab import Executor, requests

    class TwoWays(Executor):
        @requests(on="/index")
        def upper(self, docs):
            for d in docs:
                d.text = d.text.upper()

        def lower(self, docs):
            for d in docs:
                d.text = d.text.lower()

        def exclaim(self, docs):
            for d in docs:
                d.text += "!"
""")


def test_uses_requests_replicas_and_polling_reach_the_remote_side(daemons, project):
    """Options added to the Pod spec reach a daemon's Pods with no list of keys to update: a Pod of
    one Pea (run as that Pea) and a Pod of replicas and shards both bind endpoints as told."""
    (project / "two.py").write_text(TWO_WAYS)
    h = daemons()
    two = {"uses": "TwoWays", "py_modules": ["two.py"], "host": _host(h)}
    f = (Flow().add(name="one", uses_requests={"/index": "lower"}, **two)
         .add(name="many", replicas=2, shards=2, polling="all", uses_requests={"/index": "exclaim"}, **two))
    with f:
        got = f.index([Document(id="a", text="MiXeD")])
        pods = {p["args"]["name"]: p["args"] for p in _objects(h)["pods"]}
    assert got.texts == ["mixed!"]  # without the rebinding both Pods would upper-case it
    assert pods["one"]["uses_requests"] == {"/index": "lower"}
    assert (pods["many"]["parallel"], pods["many"]["shards"], pods["many"]["polling"]) == (2, 2, "all")

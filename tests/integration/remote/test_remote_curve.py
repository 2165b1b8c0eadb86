"""CURVE keys handed to a remote Pod through its daemon: the Flow answers, and the keys are nowhere
in clear - not in any process's command line, the daemon's SQLite database, its logs, nor its
answers - while a stranger without a key is refused by the remote Pod's sockets."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import psutil
import pytest
import zmq.utils.z85

from jinad_fab import Document, Flow
from tests.support.daemons import processes_of

pytestmark = pytest.mark.timeout(240)

TAGGER = textwrap.dedent("""
    from jinad_fab import Executor, requests

    class Tagger(Executor):
        def __init__(self, label="?", **kwargs):
            super().__init__(**kwargs)
            self.label = label

        @requests
        def tag(self, docs):
            for d in docs:
                d.tags.setdefault("path", []).append(self.label)
""")

STRANGER = textwrap.dedent("""
    import sys, zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.linger = 0
    s.rcvtimeo = 1500
    s.connect(sys.argv[1])
    s.send_json({"cmd": "status"})
    try:
        print(s.recv_json())
    except zmq.Again:
        print("no answer")
    s.close()
    ctx.term()
""")


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "tagger.py").write_text(TAGGER)
    monkeypatch.chdir(tmp_path / "proj")
    return tmp_path / "proj"


def _files(root: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def _leaks(blob: bytes, secrets: list[str]) -> list[str]:
    found = []
    for s in secrets:
        if s.encode() in blob or zmq.utils.z85.decode(s.encode()) in blob:
            found.append(s[:6] + "...")
    return found


@pytest.mark.parametrize("shape", ["one-pea", "replicas"])
def test_remote_pod_gets_its_keys_sealed_and_nothing_keeps_them(daemons, project, shape):
    h = daemons()
    extra = {"parallel": 2} if shape == "replicas" else {}
    f = (Flow(secure=True)
         .add(name="local", uses="Tagger", py_modules=["tagger.py"], uses_with={"label": "local"})
         .add(name="far", host=f"127.0.0.1:{h.port}", uses="Tagger", py_modules=["tagger.py"],
              uses_with={"label": "far"}, **extra))
    with f:
        assert f.secure
        got = f.index([Document(id=str(i), text=f"doc {i}") for i in range(30)], request_size=7)
        assert got.ids == [str(i) for i in range(30)]
        assert got[0].tags["path"] == ["local", "far"]
        far = f._running["far"]
        keys = far.curve
        secrets = [keys.secret, keys.server_secret]
        # a stranger on the far Pod's control port gets nothing
        out = subprocess.run([sys.executable, "-c", STRANGER, far.ctrl_address], capture_output=True,
                             text=True, timeout=30)
        assert out.stdout.strip() == "no answer", out.stdout + out.stderr
        # no process of the daemon (daemon, zygote, the Pod and its Peas) carries them in its argv
        daemon = psutil.Process(h.proc.pid)
        procs = list({p.pid: p for p in [daemon, *daemon.children(recursive=True), *processes_of(h.home)]}.values())
        assert len(procs) >= (3 if shape == "one-pea" else 5)
        for p in procs:
            try:
                cmdline = "\0".join(p.cmdline()).encode()
            except psutil.NoSuchProcess:
                continue
            assert not _leaks(cmdline, secrets), p
        # nor any file the daemon keeps: its SQLite database (and WAL), logs, status files
        files = _files(h.home)
        assert h.home / "jinad.db" in files
        with h.client() as c:  # the database does know the Pod (so it was the right place to look)
            assert c.get(f"/pods/{far.pod_id}").json()["args"]["name"] == "far"
        for p in files:
            assert not _leaks(p.read_bytes(), secrets), p
        assert not _leaks(h.log.read_bytes(), secrets)
        # nor what it answers about the Pod
        with h.client() as c:
            body = c.get(f"/pods/{far.pod_id}").json()
        assert not _leaks(json.dumps(body).encode(), secrets) and "curve" not in body.get("args", {})


def test_a_remote_pod_without_keys_is_plain_and_answers_a_stranger(daemons, project):
    """The same far Pod in a Flow with secure=False: its control port answers anyone (what CURVE prevents)."""
    h = daemons()
    f = Flow(secure=False).add(name="far", host=f"127.0.0.1:{h.port}", uses="Tagger", py_modules=["tagger.py"])
    with f:
        assert not f.secure
        assert f.index([Document(text="x")])[0].tags["path"] == ["?"]
        out = subprocess.run([sys.executable, "-c", STRANGER, f._running["far"].ctrl_address],
                             capture_output=True, text=True, timeout=30)
        assert "'ok': True" in out.stdout

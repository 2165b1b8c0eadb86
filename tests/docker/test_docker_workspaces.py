"""A real `jinad --runtime docker`: workspace images, Flows in containers, recovery, clean-up."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from jinad_fab import Client, Document
from tests.integration.live._load import CORPUS, Load
from tests.support.daemons import FLOW_YML, upload, wait_state
from tests.support.docker import BASE_IMAGE, docker_cli, leftovers
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(600)

LIVE_EXECS = os.path.join(os.path.dirname(__file__), os.pardir, "integration", "live", "_live_execs.py")
LIVE_FLOW = """!Flow
version: '1'
pods:
  - name: enc
    uses: VersionedEncoder
    py_modules: [_live_execs.py]
    parallel: 2
    uses_with: {version: v1}
  - name: idx
    uses: _index
    shards: 2
"""


def daemon_id(d) -> str:
    return (d.home / "daemon-id").read_text().strip()


def build(c: httpx.Client, files: dict, timeout: float = 300) -> dict:
    r = upload(c, files, runtime="docker")
    assert r.status_code == 201, r.text
    return wait_state(c, f"/workspaces/{r.json()['id']}", {"ACTIVE", "FAILED"}, timeout=timeout)


def messages(c: httpx.Client, object_id: str) -> list[str]:
    import json

    r = c.get(f"/logs/{object_id}")
    assert r.status_code == 200, r.text
    return [json.loads(line).get("msg", "") for line in r.text.splitlines() if line.strip()]


def test_flow_in_containers_index_search_change_live_delete_leaves_nothing(docker_daemon, engine):
    d = docker_daemon()
    with open(LIVE_EXECS, encoding="utf-8") as fh:
        execs = fh.read()
    with d.client() as c:
        ws = build(c, {"flow.yml": FLOW_YML, "live.yml": LIVE_FLOW, "_live_execs.py": execs})
        assert ws["state"] == "ACTIVE", ws
        wid = ws["id"]
        owned = leftovers(engine, daemon_id(d))
        assert owned["networks"] == [f"jinad-{wid}"] and len(owned["images"]) == 1

        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"})
        assert r.status_code == 201, r.text
        flow = r.json()
        assert flow["state"] == "RUNNING", flow
        (container,) = engine.containers.list(filters={"label": f"jinad.id={flow['id']}"})
        host_config = container.attrs["HostConfig"]
        assert host_config["Privileged"] is False and host_config["CapDrop"] == ["ALL"]
        assert container.attrs["Config"]["User"] == "10001:10001"
        assert not any("docker.sock" in m["Source"] for m in container.attrs["Mounts"])
        bindings = [b for bs in host_config["PortBindings"].values() for b in bs]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)

        port = flow["gateway"]["http_port"]
        gw = f"http://127.0.0.1:{port}"
        docs = [{"text": "hello"}, {"text": "world"}]
        answer = httpx.post(gw + "/index", json={"data": docs, "parameters": {}}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert [doc["text"] for doc in answer.json()["data"]] == ["hello", "world"]
        answer = httpx.post(gw + "/search", json={"data": [{"text": "hello"}]}, timeout=30)
        assert answer.status_code == 200 and answer.json()["data"][0]["text"] == "hello"

        assert c.delete(f"/flows/{flow['id']}").status_code in (200, 204)
        assert not engine.containers.list(all=True, filters={"label": f"jinad.id={flow['id']}"})

        change_live(c, engine, wid)
        assert c.delete(f"/workspaces/{wid}").status_code in (200, 204)
        assert c.get(f"/workspaces/{wid}").status_code == 404

    assert leftovers(engine, daemon_id(d)) == {"containers": [], "networks": [], "images": []}
    label = f"label=jinad.daemon={daemon_id(d)}"
    assert docker_cli("ps", "-a", "-q", "--filter", label).strip() == ""
    assert docker_cli("network", "ls", "-q", "--filter", label).strip() == ""
    assert docker_cli("images", "-a", "-q", "--filter", label).strip() == ""
    assert not (d.home / "workspaces" / wid).exists()


def change_live(c: httpx.Client, engine, wid: str) -> None:
    """A Flow in a container scaled, rolled, dumped and rolled from its dump over REST (issue 15),
    while clients search: its control socket is published on the host's loopback for the daemon."""
    r = c.post("/flows", params={"workspace_id": wid, "filename": "live.yml"}, timeout=120)
    assert r.status_code == 201, r.text
    fid, native = r.json()["id"], r.json()["gateway"]["native_port"]
    assert c.get(f"/flows/{fid}").json()["live"]["pods"]["enc"] == {"replicas": 2, "restarts": 0}
    (container,) = engine.containers.list(filters={"label": f"jinad.id={fid}"})
    assert len(container.attrs["HostConfig"]["PortBindings"]) == 3  # http, native and control

    def client() -> Client:
        return Client(port=native, timeout=60)

    with client() as feed:
        feed.post("/index", [Document(id=t, text=t) for t in CORPUS], request_size=50)
    with Load(client, clients=8) as load:
        load.wait_answers(20)
        r = c.put(f"/flows/{fid}", json={"kind": "scale", "pod": "enc", "replicas": 3}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["live"]["pods"]["enc"]["replicas"] == 3
        load.wait_answers(20)
        r = c.put(f"/flows/{fid}", json={"kind": "rolling_update", "pod": "enc", "uses_with": {"version": "v2"}},
                  timeout=120)
        assert r.status_code == 200, r.text
        assert [e["step"] for e in r.json()["live"]["change"]["events"]].count("stopped") == 3
        updated_at = time.monotonic()
        load.wait_answers(20)
        # a dump written in the container's copy of the workspace, and index replicas started from it
        r = c.put(f"/flows/{fid}", json={"kind": "dump", "pod": "idx", "path": "dumps/a"}, timeout=120)
        assert r.status_code == 200, r.text
        r = c.put(f"/flows/{fid}", json={"kind": "rolling_update", "pod": "idx", "dump_path": "dumps/a"},
                  timeout=120)
        assert r.status_code == 200, r.text
        assert [e["step"] for e in r.json()["live"]["change"]["events"]].count("started") == 2
        load.wait_answers(20)
    assert load.errors == [] and load.wrong == []
    assert all(len(v) == 1 for _, _, v in load.answers), "a request met two versions"
    assert {v for sent, _, vs in load.answers if sent > updated_at for v in vs} == {"v2"}
    assert c.get(f"/flows/{fid}").json()["live"]["pods"] == {"enc": {"replicas": 3, "restarts": 0},
                                                              "idx": {"replicas": 1, "restarts": 0}}
    assert c.delete(f"/flows/{fid}").status_code in (200, 204)


def test_same_files_reuse_the_image(docker_daemon, engine):
    d = docker_daemon()
    with d.client() as c:
        files = {"flow.yml": FLOW_YML, "requirements.txt": "six\n"}
        t0 = time.monotonic()
        ws = build(c, files)
        cold = time.monotonic() - t0
        assert ws["state"] == "ACTIVE", ws
        (image,) = leftovers(engine, daemon_id(d))["images"]

        t0 = time.monotonic()
        r = c.put(f"/workspaces/{ws['id']}",
                  files=[("files", (name, data.encode())) for name, data in files.items()])
        assert r.status_code == 200, r.text
        ws = wait_state(c, f"/workspaces/{ws['id']}", {"ACTIVE", "FAILED"}, timeout=300)
        cached = time.monotonic() - t0
        assert ws["state"] == "ACTIVE", ws
        assert leftovers(engine, daemon_id(d))["images"] == [image]
        assert any("up to date" in m and "not rebuilding" in m for m in messages(c, ws["id"]))
        print(f"image build: cold {cold:.1f}s, same files again {cached:.1f}s")
        assert cached < cold

        # A changed file is a new content hash: a new image replaces the old one.
        r = c.put(f"/workspaces/{ws['id']}", files=[("files", ("extra.txt", b"changed"))])
        ws = wait_state(c, f"/workspaces/{ws['id']}", {"ACTIVE", "FAILED"}, timeout=300)
        assert ws["state"] == "ACTIVE", ws
        assert leftovers(engine, daemon_id(d))["images"] != [image]


def test_sigkilled_daemon_readopts_its_containers(docker_daemon, engine):
    d = docker_daemon()
    with d.client() as c:
        ws = build(c, {"flow.yml": FLOW_YML})
        assert ws["state"] == "ACTIVE", ws
        flow = c.post("/flows", params={"workspace_id": ws["id"], "filename": "flow.yml"}).json()
        assert flow["state"] == "RUNNING", flow
    (before,) = engine.containers.list(filters={"label": f"jinad.id={flow['id']}"})

    d.kill()
    assert engine.containers.get(before.id).status == "running"  # containers outlive the daemon
    d.start(timeout=60)
    with d.client() as c:
        again = c.get(f"/flows/{flow['id']}").json()
        assert again["state"] == "RUNNING", again
        assert any("re-adopted" in m for m in messages(c, flow["id"]))
        gw = f"http://127.0.0.1:{again['gateway']['http_port']}"
        answer = httpx.post(gw + "/index", json={"data": [{"text": "after restart"}]}, timeout=30)
        assert answer.status_code == 200 and answer.json()["data"][0]["text"] == "after restart"
        (after,) = engine.containers.list(filters={"label": f"jinad.id={flow['id']}"})
        assert after.id == before.id
        assert c.delete(f"/workspaces/{ws['id']}").status_code in (200, 204)
    assert leftovers(engine, daemon_id(d)) == {"containers": [], "networks": [], "images": []}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({".jinad": "dockerfile = Dockerfile\n", "Dockerfile": "FROM {base}\nRUN echo about to fail && false\n"},
         "about to fail"),
        ({".jinad": "dockerfile = Missing.Dockerfile\n"}, "not in the workspace"),
        ({"requirements.txt": "no-such-package-jinad-fab-test==9.9\n"}, "pip"),
        ({"requirements.txt": "--index-url http://127.0.0.1:9/simple\nsix\n"}, "only package specifiers"),
    ],
    ids=["failing-dockerfile", "missing-dockerfile", "unknown-requirement", "pip-option"],
)
def test_bad_builds_fail_with_the_log_tail_and_leave_nothing(shared_docker_daemon, engine, files, expected):
    d = shared_docker_daemon
    files = {name: text.replace("{base}", BASE_IMAGE) for name, text in files.items()}
    with d.client() as c:
        ws = build(c, {"flow.yml": FLOW_YML, **files})
        assert ws["state"] == "FAILED", ws
        text = (ws["error"] or "") + "\n".join(ws["build_log_tail"])
        assert expected in text, ws
        assert leftovers(engine, daemon_id(d))["containers"] == []
        assert leftovers(engine, daemon_id(d))["images"] == []
        assert c.delete(f"/workspaces/{ws['id']}").status_code in (200, 204)
    assert leftovers(engine, daemon_id(d)) == {"containers": [], "networks": [], "images": []}
    assert not docker_cli("images", "-q", "--filter", "dangling=true", "--filter",
                          f"label=jinad.daemon={daemon_id(d)}").strip()


@pytest.mark.parametrize("jinad", ["python = 3.11\nbogus = 1\n", "ports = http\n", "python = latest\n",
                                   'run = "unterminated\n'])
def test_a_bad_jinad_is_refused_at_upload(shared_docker_daemon, engine, jinad):
    d = shared_docker_daemon
    with d.client() as c:
        r = upload(c, {".jinad": jinad, "flow.yml": FLOW_YML}, runtime="docker")
        assert r.status_code == 400, r.text
        assert ".jinad" in r.json()["detail"]
        assert c.get("/workspaces").json()["items"] == []
    assert leftovers(engine, daemon_id(d)) == {"containers": [], "networks": [], "images": []}


APP = """
import http.server, sys

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from the project container")

http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), Hello).serve_forever()
"""


def test_jinad_run_starts_a_project_container(docker_daemon, engine):
    d = docker_daemon()
    port = free_port()
    with d.client() as c:
        ws = build(c, {".jinad": f'python = 3.11\nports = {port}\nrun = "python app.py {port}"\n', "app.py": APP})
        assert ws["state"] == "ACTIVE", ws
        assert ws["config"]["ports"] == [port]
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert r.text == "hello from the project container"
        (project,) = engine.containers.list(filters={"label": f"jinad.workspace={ws['id']}"})
        assert project.labels["jinad.kind"] == "run"
        assert project.attrs["HostConfig"]["PortBindings"] == {f"{port}/tcp": [{"HostIp": "127.0.0.1",
                                                                                 "HostPort": str(port)}]}
        assert c.delete(f"/workspaces/{ws['id']}").status_code in (200, 204)
    assert leftovers(engine, daemon_id(d)) == {"containers": [], "networks": [], "images": []}

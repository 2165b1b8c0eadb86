"""The JinaD form: a Flow YAML whose Pods name other daemons (``host: 127.0.0.1:PORT``), posted to
one daemon with POST /flows, runs there with those Pods started on the other daemons. The other
daemons' tokens come with the request or from the daemon's configured peers, and never land in
clear in a database, a log, a status file or the Flow's argv."""

from __future__ import annotations

import textwrap
import time

import httpx
import pytest

from tests.support.daemons import active_workspace, assert_never_in_clear

pytestmark = pytest.mark.timeout(240)

ENCODER = textwrap.dedent("""
    import zlib
    import numpy as np
    from jinad_fab import Executor, requests

    class Stamp(Executor):
        def __init__(self, label="?", **kwargs):
            super().__init__(**kwargs)
            self.label = label

        @requests
        def stamp(self, docs, parameters):
            for d in docs:
                d.tags.setdefault("path", []).append(self.label)
                rng = np.random.default_rng(zlib.crc32(d.text.encode()))
                d.embedding = rng.standard_normal(8).astype("float32")
""")


def _flow(far_port: int) -> str:
    return textwrap.dedent(f"""\
        !Flow
        version: '1'
        with:
          protocol: http
        pods:
          - name: near
            uses: Stamp
            uses_with: {{label: near}}
            py_modules: [stamp.py]
          - name: far
            uses: Stamp
            uses_with: {{label: far}}
            py_modules: [stamp.py]
            host: 127.0.0.1:{far_port}
          - name: index
            uses: _index
            host: 127.0.0.1:{far_port}
        """)


def _run_and_check(near, far, peers: dict | None) -> dict:
    with near.client() as c:
        wid = active_workspace(c, {"stamp.py": ENCODER, "flow.yml": _flow(far.port)})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"},
                   **({"json": {"peers": peers}} if peers is not None else {}))
        assert r.status_code == 201, r.text
        flow = r.json()
        assert flow["state"] == "RUNNING"
        pods = {p["name"]: p for p in flow["pods"]}
        assert pods["near"]["daemon"] is None
        assert pods["far"]["daemon"] == far.address and pods["index"]["daemon"] == far.address
        base = f"http://127.0.0.1:{flow['gateway']['http_port']}"
        docs = [{"id": str(i), "text": f"doc {i}"} for i in range(12)]
        r = httpx.post(f"{base}/index", json={"data": docs}, timeout=60)
        assert r.status_code == 200, r.text
        assert [d["tags"]["path"] for d in r.json()["data"]] == [["near", "far"]] * 12
        r = httpx.post(f"{base}/search", json={"data": [docs[5]], "parameters": {"top_k": 1}}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["matches"][0]["id"] == "5"
    # the far Pods run on the far daemon, in a workspace the Flow made there
    with far.client() as fc:
        running = [p for p in fc.get("/pods").json()["items"] if p["state"] == "RUNNING"]
        assert sorted(p["id"] for p in running) == sorted([pods["far"]["id"], pods["index"]["id"]])
    return flow


def test_a_posted_flow_starts_its_remote_pods_on_the_other_daemon(daemon_factory) -> None:
    near = daemon_factory(token="near-" + "a" * 24)
    far = daemon_factory(token="far-secret-" + "b" * 24)
    flow = _run_and_check(near, far, {far.address: far.token})
    assert_never_in_clear(far.token, near, far)
    with near.client() as c:
        r = c.delete(f"/flows/{flow['id']}")
        assert r.status_code == 200 and r.json()["state"] == "STOPPED", r.text
    # the Flow stopped its remote Pods and removed the workspace it made there
    with far.client() as fc:
        assert [p for p in fc.get("/pods").json()["items"] if p["state"] == "RUNNING"] == []
        assert fc.get("/workspaces").json()["items"] == []


def test_the_daemons_configured_peers_supply_the_token_and_its_rotation(daemon_factory, tmp_path) -> None:
    far = daemon_factory(token="far-configured-" + "c" * 24)
    peer_file = tmp_path / "far.token"
    peer_file.write_text(far.token + "\n")
    peer_file.chmod(0o600)
    near = daemon_factory(token="near-" + "d" * 24, extra=["--peer", f"{far.address}={peer_file}"],
                          env={"JINAD_RECONCILE_INTERVAL": "0.5"})
    flow = _run_and_check(near, far, None)
    assert_never_in_clear(far.token, near, far)

    # `provision rotate-token` on the far daemon, the peer's token file rewritten: the running Flow
    # is handed the new token and still reaches its Pods there once the old one is refused
    old, new = far.token, "far-rotated-" + "h" * 24
    with far.client() as fc:
        assert fc.put("/token", json={"token": new}).status_code == 200
    far.token = new
    peer_file.write_text(new + "\n")
    with near.client() as c:
        deadline = time.monotonic() + 30
        while "handed the Flow the new token" not in c.get(f"/logs/{flow['id']}").text:
            assert time.monotonic() < deadline, "the Flow was not handed the far daemon's new token"
            time.sleep(0.2)
    with far.client() as fc:
        assert fc.delete("/token/previous").status_code in (200, 204)
        assert fc.get("/pods", headers={"Authorization": f"Bearer {old}"}).status_code in (401, 403)
    with near.client() as c:  # the Flow stops its Pods on the far daemon: with the new token
        assert c.delete(f"/flows/{flow['id']}").json()["state"] == "STOPPED"
    with far.client() as fc:
        assert [p for p in fc.get("/pods").json()["items"] if p["state"] == "RUNNING"] == []
        assert fc.get("/workspaces").json()["items"] == []
    assert_never_in_clear(new, near, far)


def test_without_the_other_daemons_token_the_flow_fails_naming_it(daemon_factory) -> None:
    near = daemon_factory(token="near-" + "e" * 24)
    far = daemon_factory(token="far-" + "f" * 24)
    with near.client() as c:
        wid = active_workspace(c, {"stamp.py": ENCODER, "flow.yml": _flow(far.port)})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"},
                   json={"peers": {far.address: "wrong-token"}})
        assert r.status_code == 400, r.text
        assert far.address in r.text and "wrong-token" not in r.text
    with far.client() as fc:
        assert [p for p in fc.get("/pods").json()["items"] if p["state"] == "RUNNING"] == []


def test_rotate_token_hands_the_new_token_to_a_flow_that_was_sent_the_old_one(daemon_factory, tmp_path) -> None:
    from jinad_fab.deploy.inventory import Inventory
    from jinad_fab.deploy.rotation import rotate_tokens

    near = daemon_factory(token="near-" + "i" * 24)
    far = daemon_factory(token="far-sent-" + "j" * 24)
    flow = _run_and_check(near, far, {far.address: far.token})  # how `flow up` starts a deployment's Flow
    folder = tmp_path / "inv"  # each host with a token file of its own, as `provision deploy` leaves them
    (folder / "credentials").mkdir(parents=True)
    hostvars = {}
    for name, d in (("near", near), ("far", far)):
        (folder / "credentials" / f"{name}.token").write_text(d.token + "\n")
        hostvars[name] = {"ansible_host": "127.0.0.1", "jinad_port": d.port,
                          "jinad_token_file": f"credentials/{name}.token"}
    inv = Inventory.from_ansible_json({"_meta": {"hostvars": hostvars}, "all": {"hosts": list(hostvars)}},
                                      source=folder / "hosts.yml")
    old = far.token
    rotated = rotate_tokens(inv, [inv["far"]])["far"]
    assert rotated.ok and rotated.flows == [f"near/{flow['id']}"], rotated
    far.token = new = (folder / "credentials" / "far.token").read_text().strip()
    with far.client() as fc:
        assert new != old and fc.get("/pods", headers={"Authorization": f"Bearer {old}"}).status_code in (401, 403)
    with near.client() as c:  # the Flow stops its Pods on the far daemon: with the token it was handed
        assert c.delete(f"/flows/{flow['id']}").json()["state"] == "STOPPED"
    with far.client() as fc:
        assert [p for p in fc.get("/pods").json()["items"] if p["state"] == "RUNNING"] == []
        assert fc.get("/workspaces").json()["items"] == []
    assert_never_in_clear(new, near, far)

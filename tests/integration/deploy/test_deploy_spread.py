"""`flow up` spreads a Pod's replicas and shards over the hosts of its group (issue 16).

Three real daemons on loopback form one group. The encoder's 4 replicas and the `_index`'s 2
shards land on different daemons (each daemon's own GET /pods says so), the Flow still answers
searches exactly (against a brute-force nearest neighbour), `flow ps` lists each Pod once with
its hosts, a live scale adds and removes replicas on the group's hosts by placement's rule, and
a host cut off has its encoder replica started again elsewhere while its index shard goes
missing, and when it answers again its stale replica goes and its shard answers again."""

from __future__ import annotations

import collections
import json
import os
import signal
import time

import httpx
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.runtime.shards import shard_of
from tests.support.daemons import assert_never_in_clear
from tests.support.fleet_flows import ENCODER, embedding

pytestmark = pytest.mark.timeout(300)

FLOW = """!Flow
version: '1'
with:
  protocol: http
  lost_after: 2
gateway:
  host: h1
pods:
  - name: encode
    uses: HashEncoder
    py_modules: [encoder.py]
    hosts: fleet
    parallel: 4
  - name: index
    uses: _index
    hosts: fleet[1:2]
    shards: 2
"""



def _cli(*args: str):
    _register()
    return CliRunner().invoke(cli, list(args))


def _pods_on(client: httpx.Client) -> collections.Counter:
    """What one daemon itself says it runs: running Pods by name, with their shard."""
    items = client.get("/pods").json()["items"]
    return collections.Counter((p["args"]["name"], tuple(p["args"].get("shard_of") or ()))
                               for p in items if p["state"] == "RUNNING")


def test_flow_up_spreads_replicas_and_shards_over_the_group_and_answers_exactly(tmp_path, daemon_factory) -> None:
    daemons = {f"h{i}": daemon_factory(token=f"tok-{i}-" + "y" * 20) for i in (1, 2, 3)}
    inv = tmp_path / "inv" / "hosts.yml"
    inv.parent.mkdir()
    inv.write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": {
        name: {"jinad_address": "127.0.0.1", "jinad_port": d.port, "jinad_token": d.token}
        for name, d in daemons.items()}}}}}))
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "encoder.py").write_text(ENCODER)
    (tmp_path / "proj" / "flow.yml").write_text(FLOW)

    rendered = _cli("render", "flow", str(tmp_path / "proj" / "flow.yml"), "-i", str(inv), "--json")
    assert rendered.exit_code == 0, rendered.output
    placed = {a["pod"]: a for a in json.loads(rendered.stdout)["placement"]}
    # one Pea at a time to the host with the fewest Peas: h1 h2 h3 h1, then the shards on h2, h3
    assert [(p["host"], p["replicas"]) for p in placed["encode"]["parts"]] == [("h1", 2), ("h2", 1), ("h3", 1)]
    assert [(p["host"], p["shard"]) for p in placed["index"]["parts"]] == [("h2", 0), ("h3", 1)]

    up = _cli("flow", "up", str(tmp_path / "proj" / "flow.yml"), "-i", str(inv), "--name", "wide", "--json")
    assert up.exit_code == 0, up.output
    info = json.loads(up.stdout)
    assert {p["pod"]: p["hosts"] for p in info["placement"]} == {"encode": ["h1", "h2", "h3"], "index": ["h2", "h3"]}
    clients = {name: d.client() for name, d in daemons.items()}
    try:
        # each daemon's own account of what runs on it
        on = {name: _pods_on(c) for name, c in clients.items()}
        assert on["h1"] == {("encode", ()): 2}
        assert on["h2"] == {("encode", ()): 1, ("index", (0, 2)): 1}
        assert on["h3"] == {("encode", ()): 1, ("index", (1, 2)): 1}

        base = f"http://127.0.0.1:{info['gateway']['http_port']}"
        texts = [f"document number {i}" for i in range(40)]
        r = httpx.post(f"{base}/index", json={"data": [{"id": str(i), "text": t} for i, t in enumerate(texts)]},
                       timeout=60)
        assert r.status_code == 200, r.text
        stored = np.stack([embedding(t) for t in texts])
        pids = set()
        for q in range(12):  # one request each: the Gateway plans them onto every replica in turn
            text = f"query {q}"
            r = httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": text}], "parameters": {"top_k": 5}},
                           timeout=60)
            assert r.status_code == 200, r.text
            (hit,) = r.json()["data"]
            distances = np.linalg.norm(stored - embedding(text), axis=1)
            expected = [str(i) for i in np.argsort(distances, kind="stable")[:5]]
            assert [m["id"] for m in hit["matches"]] == expected  # both shards answered, merged exactly
            assert [m["scores"]["euclidean"] for m in hit["matches"]] == pytest.approx(sorted(distances)[:5], abs=1e-4)
            pids.add(hit["tags"]["pid"])
        assert len(pids) == 4  # every replica, on its three daemons, took requests
        # the keeper's Flow holds h2's and h3's tokens (it starts replicas there), never in clear
        for peer in ("h2", "h3"):
            assert_never_in_clear(daemons[peer].token, daemons["h1"])

        st = json.loads(_cli("flow", "ps", "wide", "-i", str(inv), "--json").stdout)
        rows = {r["pod"]: r for r in st["pods"]}
        assert len(st["pods"]) == 3  # the gateway, and each Pod once
        assert (rows["encode"]["hosts"], rows["encode"]["state"], rows["encode"]["replicas"]) == (
            ["h1", "h2", "h3"], "RUNNING", 4)
        assert (rows["index"]["hosts"], rows["index"]["state"]) == (["h2", "h3"], "RUNNING")

        # `flow up` again with a higher `parallel`: the Pod is scaled in place, by its name, and the new
        # replicas go where it has the fewest (h2, h3)
        (tmp_path / "proj" / "flow.yml").write_text(FLOW.replace("parallel: 4", "parallel: 6"))
        again = _cli("flow", "up", str(tmp_path / "proj" / "flow.yml"), "-i", str(inv), "--name", "wide", "--json")
        assert again.exit_code == 0, again.output
        applied = json.loads(again.stdout)
        assert (applied["changed"], applied["action"], applied["flow_id"]) == (1, "rolled encode", st["flow_id"])
        on = {name: _pods_on(c)[("encode", ())] for name, c in clients.items()}
        assert on == {"h1": 2, "h2": 2, "h3": 2}
        hit = httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": texts[7]}], "parameters": {"top_k": 1}},
                         timeout=60).json()["data"][0]
        assert hit["matches"][0]["id"] == "7"
        # and back down (the keeper's PUT /flows/{id}, as `flow scale` asks it): the newest replicas of
        # the hosts holding the most go first
        r = clients["h1"].put(f"/flows/{st['flow_id']}", json={"kind": "scale", "pod": "encode", "replicas": 3})
        assert r.status_code == 200, r.text
        on = {name: _pods_on(c)[("encode", ())] for name, c in clients.items()}
        assert sorted(on.values()) == [1, 1, 1], on
        rows = {r["pod"]: r for r in json.loads(_cli("flow", "ps", "wide", "-i", str(inv), "--json").stdout)["pods"]}
        assert rows["encode"]["replicas"] == 3 and rows["encode"]["hosts"] == ["h1", "h2", "h3"]

        # a rolling update by the Pod's name: every replica replaced, one at a time, on the same hosts
        r = clients["h1"].put(f"/flows/{st['flow_id']}", json={"kind": "rolling_update", "pod": "encode",
                                                                 "uses_with": {"version": "v2"}})
        assert r.status_code == 200, r.text
        assert {name: _pods_on(c)[("encode", ())] for name, c in clients.items()} == on
        versions = {httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": t}]}, timeout=60)
                    .json()["data"][0]["tags"]["version"] for t in texts[:6]}
        assert versions == {"v2"}

        # h3 is cut off (its daemon stopped; its Peas run on): its encoder replica starts again on the
        # rest of the group (h1: the fewest, first in order), its index shard is missing, and searches
        # answer from the other shard, saying so
        os.kill(daemons["h3"].proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while True:
            on = {name: _pods_on(clients[name])[("encode", ())] for name in ("h1", "h2")}
            r = httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": texts[7]}],
                                                   "parameters": {"top_k": 5}}, timeout=60)
            missing = r.json().get("header", {}).get("missing_shards") if r.status_code == 200 else None
            if on == {"h1": 2, "h2": 1} and missing:
                break
            assert time.monotonic() < deadline, (on, r.status_code, r.text[:300])
            time.sleep(0.3)
        assert missing == ["index/shard-1"] and r.headers["X-Missing-Shards"] == "index/shard-1"
        left = [i for i in range(40) if shard_of(str(i), 2) == 0]  # what shard 0 holds
        distances = np.linalg.norm(stored[left] - embedding(texts[7]), axis=1)
        assert [m["id"] for m in r.json()["data"][0]["matches"]] == [str(left[i]) for i in np.argsort(
            distances, kind="stable")[:5]]
        while True:  # what the Flow reports of its Pods (GET /flows/{id} on the keeper) within a second
            pods = {p["name"]: p for p in clients["h1"].get(f"/flows/{st['flow_id']}").json()["pods"]}
            if (pods["encode"].get("lost", {}).get("state") == "REPLACED" and "missing_shards" in pods["index"]) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (pods["encode"]["lost"]["state"], pods["encode"]["lost"]["daemon"]) == ("REPLACED", daemons["h3"].address)
        assert len(pods["encode"]["lost"]["replicas"]) == 1 and pods["encode"]["lost"]["to"] == [daemons["h1"].address]
        assert sorted(p["daemon"] for p in pods["encode"]["parts"]) == sorted(
            [daemons["h1"].address] * 2 + [daemons["h2"].address])
        assert pods["index"]["missing_shards"]["index/shard-1"]["state"] == "LOST"
        ps = _cli("flow", "ps", "wide", "-i", str(inv), "--json")  # waits out the silent daemon's timeouts
        assert ps.exit_code == 4 and "LOST on h3" in ps.output and "shards LOST: index/shard-1" in ps.output, ps.output
        rows = {r["pod"]: r for r in json.loads(ps.stdout)["pods"]}
        assert (rows["encode"]["state"], rows["encode"]["replicas"], rows["encode"]["hosts"]) == ("RUNNING", 3, ["h1", "h2"])
        assert [p["state"] for p in rows["index"]["parts"]] == ["RUNNING", "LOST"]
        assert rows["index"]["missing_shards"]["index/shard-1"]["state"] == "LOST", rows["index"]
        # a write that needs the lost shard fails naming it: nothing is dropped silently
        to_lost = next(str(n) for n in range(100, 200) if shard_of(str(n), 2) == 1)
        r = httpx.post(f"{base}/index", json={"data": [{"id": to_lost, "text": "new"}]}, timeout=60)
        assert r.status_code == 503 and r.json()["header"]["err"]["shards"] == ["index/shard-1"], r.text

        # h3 answers again: nothing runs twice (its stale encoder replica goes), its shard answers again
        os.kill(daemons["h3"].proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while True:
            on = _pods_on(clients["h3"])
            r = httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": texts[7]}],
                                                   "parameters": {"top_k": 5}}, timeout=60)
            pods = {p["name"]: p for p in clients["h1"].get(f"/flows/{st['flow_id']}").json()["pods"]}
            if on == {("index", (1, 2)): 1} and r.status_code == 200 and "missing_shards" not in r.json()["header"] \
                    and "missing_shards" not in pods["index"]:
                break
            assert time.monotonic() < deadline, (on, r.status_code, r.text[:300])
            time.sleep(0.3)
        distances = np.linalg.norm(stored - embedding(texts[7]), axis=1)
        assert [m["id"] for m in r.json()["data"][0]["matches"]] == [str(i) for i in np.argsort(
            distances, kind="stable")[:5]]
        ps = _cli("flow", "ps", "wide", "-i", str(inv), "--json")
        assert ps.exit_code == 0, ps.output
        rows = {r["pod"]: r for r in json.loads(ps.stdout)["pods"]}
        assert (rows["encode"]["hosts"], rows["encode"]["state"]) == (["h1", "h2"], "RUNNING")
        assert (rows["index"]["hosts"], rows["index"]["state"]) == (["h2", "h3"], "RUNNING")

        down = _cli("flow", "down", "wide", "-i", str(inv), "-y", "--json")
        assert down.exit_code == 0, down.output
        assert all(not _pods_on(c) for c in clients.values())
    finally:
        for c in clients.values():
            c.close()


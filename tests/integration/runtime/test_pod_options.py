"""Pod options that must do what they say in real Peas: gpus, timeout_ready, replicas, polling."""

import os
import time

import pytest

from jinad_fab import Document, Flow
from jinad_fab.errors import PeaStartError

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("gpus,env,expected", [
    ([1, 3], None, "1,3"),
    (2, None, "0,1"),
    ("0,2", None, "0,2"),
    ("all", None, os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")),
    (None, None, os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")),
    (1, {"CUDA_VISIBLE_DEVICES": "7"}, "7"),  # an explicit env wins over `gpus`
])
def test_local_pod_gpus_set_exactly_the_env_every_pea_receives(execs, gpus, env, expected):
    extra = {k: v for k, v in (("gpus", gpus), ("env", env)) if v is not None}
    with Flow().add(name="g", parallel=2, **execs("EnvEcho"), **extra) as f:
        got = f.index([Document() for _ in range(40)], request_size=1)
    assert {d.tags["CUDA_VISIBLE_DEVICES"] for d in got} == {expected}
    assert len({d.tags["pid"] for d in got}) == 2  # both replicas answered, each with that env


def test_a_pods_own_timeout_ready_is_enforced(execs, capfd):
    f = Flow(timeout_ready=60).add(name="slow", uses_with={"seconds": 30}, timeout_ready=1, **execs("SlowStart"))
    with pytest.raises(PeaStartError, match="slow.*not ready in time"), f:
        pass
    # the Pea still in its Executor's constructor leaves when told to, rather than finishing it
    # and being killed after the stop's grace period, and says so (its stderr is relayed by a
    # thread, so the line may come a moment later). On a busy machine the stop can arrive before
    # the Pea reached the constructor: SIGTERM's default action ends it then, and there is
    # nothing to check.
    err = capfd.readouterr().err
    if "SlowStart: constructing" in err:
        deadline = time.monotonic() + 10
        while "stopped while loading its Executor" not in err and time.monotonic() < deadline:
            time.sleep(0.1)
            err += capfd.readouterr().err
        assert "stopped while loading its Executor" in err, err


def test_a_pods_own_timeout_ready_may_exceed_the_flows(execs):
    # the Flow allows 0.5 s, the slow Pod needs 2 s and is allowed 60 s: it starts and serves
    f = Flow(timeout_ready=0.5).add(name="slow", uses_with={"seconds": 2}, timeout_ready=60, **execs("SlowStart"))
    with f:
        assert f.index([Document(text="x")])[0].tags["slow"] is True


def test_replicas_is_parallel(execs):
    with Flow().add(name="r", replicas=3, **execs("Stamp")) as f:
        assert f.pods["r"]["parallel"] == 3
        got = f.search([Document() for _ in range(60)], request_size=1, parameters={"sleep": 0.01})
    assert len({d.tags["seen_by"][0] for d in got}) == 3


@pytest.mark.parametrize("polling,index_all,search_all", [
    ("all", True, True),  # every shard sees every request
    ("any", False, False),  # each Document reaches exactly one shard, even for /search
    (None, False, True),  # the default: writes by id, searches to all
])
def test_polling_all_or_any(execs, polling, index_all, search_all):
    extra = {"polling": polling} if polling else {}
    docs = [Document(id=f"d{i}") for i in range(12)]
    with Flow().add(name="idx", shards=3, **execs("ShardEcho"), **extra) as f:
        indexed = f.index(docs)
        searched = f.search(docs, parameters={"top_k": 10})
    # after the merge, a Document seen by every shard carries one match per shard
    for d in searched:
        assert len(d.matches) == (3 if search_all else 1), (polling, d.id, d.matches)
    assert sorted(d.id for d in indexed) == sorted(d.id for d in docs)
    if not index_all:
        shards = {d.tags["shard"] for d in indexed}
        assert shards == {0, 1, 2}  # twelve ids spread over all three shards


@pytest.mark.parametrize("parallel", [1, 2])  # one Pea (no head), and replicas behind the Pod
def test_uses_requests_binds_endpoints_to_methods_by_name(execs, parallel):
    f = Flow().add(name="w", parallel=parallel, uses_requests={"/search": "lower", "/index": "lower"},
                   **execs("TwoWays"))
    with f:
        assert f.index([Document(text="MiXeD")])[0].text == "mixed"  # over the class's @requests
        assert f.search([Document(text="MiXeD")])[0].text == "mixed"
        assert f.post("/other", [Document(text="MiXeD")])[0].text == "MiXeD"  # still bound to nothing

"""Where a spread Pod puts a new replica and which one it removes first (no daemon: the rule only)."""

from __future__ import annotations

import types

import pytest

from jinad_fab.errors import PeaStartError
from jinad_fab.flow.spread import SpreadPod


class _Made:
    """What the Flow would start for a replica: only its spec and its daemon's label are read here."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.args = {"changeable": True}  # what a Flow asks of a remote Pod; a slot never grows itself
        self.session = types.SimpleNamespace(label=spec["host"], workspace_id=None)
        self.pod_id = None


def _pod(spread: dict, **spec) -> SpreadPod:
    flow = types.SimpleNamespace(_daemon_tokens={"a:1": "tok-a"}, args={"timeout_ready": 60}, _fork=False,
                                 _remote_pod=lambda s, n, sessions, curve: _Made(s))
    return SpreadPod(flow, {"name": "enc", "host": "a:1", "needs": ["gateway"], **spec, "spread": spread},
                     num_parts=1, sessions={}, bind_host="127.0.0.1")


def test_a_new_replica_goes_to_the_host_of_the_group_holding_the_fewest() -> None:
    pod = _pod({"parts": [{"host": "a:1", "replicas": 2}, {"host": "b:1", "replicas": 1}],
                "hosts": [{"host": "a:1"}, {"host": "b:1"}, {"host": "c:1"}]}, parallel=3)
    assert [s.target for s in pod.slots[0]] == ["a:1", "a:1", "b:1"]
    assert [s.pod.spec["token"] for s in pod.slots[0]] == ["tok-a", "tok-a", None]  # each daemon's own
    assert pod.slots[0][0].pod.spec["parallel"] == 1 and "spread" not in pod.slots[0][0].pod.spec
    assert "changeable" not in pod.slots[0][0].pod.args
    assert pod._choose(0) == "c:1"
    pod.lost_targets.add("c:1")
    assert pod._choose(0) == "b:1"  # a lost host takes nothing more
    # scaling down removes the newest replica of the host holding the most: replica 1, on a:1
    assert pod.members() == {"enc": {"pod": "enc", "replicas": ["0", "2", "1"]}}
    assert pod.labels()["enc"]["1"] == "enc/replica-1"


def test_gpu_replicas_go_where_gpus_are_free_and_take_their_ids() -> None:
    pod = _pod({"parts": [{"host": "a:1", "replicas": 2, "gpu_ids": [0, 1]}],
                "hosts": [{"host": "a:1", "free_gpu_ids": [2]}, {"host": "b:1"},
                          {"host": "c:1", "free_gpu_ids": [0, 1]}]}, parallel=2, gpus=1)
    assert [s.pod.spec["gpus"] for s in pod.slots[0]] == [[0], [1]]
    assert pod._choose(0) == "c:1"  # the most free GPUs; b:1 has none
    pod.free["c:1"] = []
    assert pod._choose(0) == "a:1"
    pod.free["a:1"] = []
    with pytest.raises(PeaStartError, match="needs 1 GPU"):
        pod._choose(0)


def test_an_index_shard_grows_only_on_its_own_host_and_carries_its_shard() -> None:
    pod = _pod({"parts": [{"host": "a:1", "replicas": 1, "shard": 0}, {"host": "b:1", "replicas": 1, "shard": 1}],
                "hosts": [{"host": "a:1"}, {"host": "b:1"}]}, uses="_index", shards=2)
    assert [[s.pod.spec["shard_of"] for s in row] for row in pod.slots] == [[[0, 2]], [[1, 2]]]
    assert list(pod.members()) == ["enc/shard-0", "enc/shard-1"] and pod.out_parts == 2
    assert pod.head is not None and pod.head.args["route"]["polling"]["/search"] == "all"
    assert (pod._choose(0), pod._choose(1)) == ("a:1", "b:1")
    pod.lost_targets.add("b:1")
    with pytest.raises(PeaStartError, match="shard 1's host b:1 is lost"):
        pod._choose(1)

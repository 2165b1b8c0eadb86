"""`flow scale|update NAME`: the recorded spec a live change turns into, without a daemon."""

from __future__ import annotations

import pytest

from jinad_fab.deploy.deployment import _edit_spec, _live_hash, live_changes
from jinad_fab.errors import BadConfig
from jinad_fab.safe_yaml import loads

SPEC = """!Flow
version: '1'
with:
  protocol: http
pods:
- name: encode
  uses: HashEncoder
  uses_with:
    version: v1
    dim: 16
  host: 10.0.0.1:8000
- name: index
  uses: _index
  replicas: 2
"""


def _pods(text: str) -> dict:
    return {p["name"]: p for p in loads(text, mode="keep", name="t", what="t").value["pods"]}


def test_a_scale_sets_the_pods_replica_key_and_a_live_diff_finds_it_again() -> None:
    scaled = _edit_spec(SPEC, {"kind": "scale", "pod": "encode", "replicas": 3}, "search")
    assert scaled.startswith("!Flow") and _pods(scaled)["encode"]["parallel"] == 3
    assert _pods(_edit_spec(SPEC, {"kind": "scale", "pod": "index", "replicas": 4}, "search"))["index"] == {
        "name": "index", "uses": "_index", "replicas": 4}  # the key the spec already uses, not a second one
    # rollback and `flow up` compare recorded specs: the way back is the one scale
    assert live_changes(scaled, SPEC) == [{"kind": "scale", "pod": "encode", "replicas": 1}]


def test_an_update_merges_uses_with_and_changes_nothing_else() -> None:
    updated = _edit_spec(SPEC, {"kind": "rolling_update", "pod": "encode", "uses_with": {"version": "v2"}}, "s")
    pods = _pods(updated)
    assert pods["encode"]["uses_with"] == {"version": "v2", "dim": 16}
    assert pods["encode"]["host"] == "10.0.0.1:8000" and pods["index"] == _pods(SPEC)["index"]
    assert live_changes(SPEC, updated) == [{"kind": "rolling_update", "pod": "encode", "uses": None,
                                            "uses_with": {"version": "v2", "dim": 16}}]
    assert _edit_spec(SPEC, {"kind": "rolling_update", "pod": "encode", "uses_with": {"version": "v1"}}, "s") == \
        _edit_spec(SPEC, {"kind": "rolling_update", "pod": "encode", "uses_with": {}}, "s")  # no-op: same text


def test_an_unknown_pod_is_named_with_the_known_ones() -> None:
    with pytest.raises(BadConfig, match=r"deployment 'search' has no Pod named 'nope' \(its Pods: encode, index\)"):
        _edit_spec(SPEC, {"kind": "scale", "pod": "nope", "replicas": 2}, "search")


def test_a_live_release_hash_depends_on_spec_gateway_and_files() -> None:
    h = _live_hash(SPEC, "c1", "f" * 64)
    assert h == _live_hash(SPEC, "c1", "f" * 64) and len(h) == 64
    assert len({h, _live_hash(SPEC + "#", "c1", "f" * 64), _live_hash(SPEC, "c2", "f" * 64),
                _live_hash(SPEC, "c1", "e" * 64)}) == 4

"""Placement of Pods on inventory hosts: groups, pinned hosts, GPU counts, spreading."""

from __future__ import annotations

import pytest

from jinad_fab.deploy.inventory import Inventory
from jinad_fab.deploy.placement import PlacementError, apply, place, pod_specs


def fleet(gpus: dict[str, int] | None = None) -> Inventory:
    gpus = gpus if gpus is not None else {"g1": 2, "g2": 1}
    hostvars = {name: {"ansible_host": f"10.9.0.{i + 10}", "jinad_gpus": n} for i, (name, n) in enumerate(gpus.items())}
    hostvars.update({f"c{i}": {"ansible_host": f"10.9.1.{i}"} for i in (1, 2, 3)})
    return Inventory.from_ansible_json({
        "_meta": {"hostvars": hostvars},
        "gpu": {"hosts": list(gpus)},
        "cpu": {"hosts": ["c1", "c2", "c3"]},
    })


def test_pods_asking_for_a_group_spread_over_its_least_loaded_hosts() -> None:
    pods = [{"name": f"p{i}", "hosts": "cpu"} for i in range(4)]
    placement = place(pods, fleet())
    assert [a.host for a in placement] == ["c1", "c2", "c3", "c1"]


def parts(a) -> list[tuple]:
    return [(p.host, p.shard, p.replicas, p.gpu_ids) for p in a.parts]


def test_replicas_and_shards_spread_over_the_group_by_peas_placed() -> None:
    pods = [{"name": "big", "hosts": "cpu", "parallel": 4}, {"name": "a", "hosts": "cpu"},
            {"name": "c", "hosts": "cpu", "shards": 2}, {"name": "d", "hosts": "cpu", "replicas": 2, "shards": 2}]
    placement = place(pods, fleet())
    # one Pea at a time, each to the host with the fewest Peas so far (ties: inventory order)
    assert parts(placement["big"]) == [("c1", None, 2, ()), ("c2", None, 1, ()), ("c3", None, 1, ())]
    assert placement["big"].hosts == ("c1", "c2", "c3") and placement["big"].host == "c1"
    assert placement["big"].group == ("c1", "c2", "c3") and placement["big"].peas == 4
    assert (placement["a"].host, placement["a"].parts) == ("c2", ())  # one Pea: not spread
    assert parts(placement["c"]) == [("c3", 0, 1, ()), ("c1", 1, 1, ())]
    # every replica of every shard is a unit of its own (Peas so far: c1=3, c2=2, c3=2)
    assert parts(placement["d"]) == [("c2", 0, 1, ()), ("c3", 0, 1, ()), ("c1", 1, 1, ()), ("c2", 1, 1, ())]
    assert placement.hosts == ["c1", "c2", "c3"]


def test_an_index_spreads_its_shards_and_keeps_each_shards_replicas_together() -> None:
    pods = [{"name": "idx", "uses": "_index", "hosts": "cpu", "shards": 3, "parallel": 2}]
    placement = place(pods, fleet())
    # its replicas share the shard's store: one unit per shard, with all its replicas
    assert parts(placement["idx"]) == [("c1", 0, 2, ()), ("c2", 1, 2, ()), ("c3", 2, 2, ())]
    assert placement["idx"].group == ("c1", "c2", "c3")  # a shard grows on its own host only (its data)
    assert placement["idx"].fallbacks == ()


def test_a_pod_that_fits_one_host_only_is_not_spread() -> None:
    placement = place([{"name": "one", "hosts": "c2", "parallel": 3, "shards": 2}], fleet())
    assert (placement["one"].host, placement["one"].parts, placement["one"].peas) == ("c2", (), 6)


def test_gpu_pods_go_where_gpus_are_free_and_get_their_device_ids() -> None:
    pods = [
        {"name": "enc", "hosts": "gpu", "gpus": 1},
        {"name": "_index", "hosts": "gpu", "gpus": 1},
        {"name": "rank", "hosts": "gpu", "gpus": 1},
    ]
    placement = place(pods, fleet())
    assert [(a.host, a.gpu_ids) for a in placement] == [("g1", (0,)), ("g2", (0,)), ("g1", (1,))]
    with pytest.raises(PlacementError, match=r"'more'.*needs 1 GPU.*g1=0, g2=0"):
        place([*pods, {"name": "more", "hosts": "gpu", "gpus": 1}], fleet())


def test_gpu_replicas_go_to_the_most_free_gpus_and_never_oversubscribe() -> None:
    inv = fleet({"g1": 4, "g2": 2, "g3": 1})
    placement = place([{"name": "enc", "hosts": "gpu", "gpus": 1, "parallel": 4}], inv)
    # the most free GPUs first: g1 (4), g1 (3); then g1 and g2 both have 2: fewer Peas, g2; then g1 (2)
    assert parts(placement["enc"]) == [("g1", None, 3, (0, 1, 2)), ("g2", None, 1, (0,))]
    assert placement.free_gpus == {"g1": (3,), "g2": (1,), "g3": (0,), "c1": (), "c2": (), "c3": ()}
    with pytest.raises(PlacementError, match=r"'wide'.*needs 2 GPU\(s\) per Pea.*g1=0, g2=0, g3=1"):
        place([{"name": "wide", "hosts": "gpu", "gpus": 2, "parallel": 4}], inv)  # 2+2+2 fit, the 4th not
    with pytest.raises(PlacementError, match=r"needs 4 GPU\(s\) per shard"):
        place([{"name": "idx", "uses": "_index", "hosts": "gpu", "gpus": 2, "parallel": 2, "shards": 2}], inv)


def test_an_ansible_pattern_chooses_the_hosts_a_pod_spreads_over() -> None:
    inv = fleet()
    assert place([{"name": "e", "hosts": "cpu[0:1]", "parallel": 4}], inv)["e"].hosts == ("c1", "c2")
    assert place([{"name": "e", "hosts": "~c[23]", "parallel": 4}], inv)["e"].hosts == ("c2", "c3")
    assert place([{"name": "e", "hosts": "all:!gpu", "parallel": 3}], inv)["e"].hosts == ("c1", "c2", "c3")
    with pytest.raises(PlacementError, match="'e'.*bad host pattern"):
        place([{"name": "e", "hosts": "cpu[7]"}], inv)


def test_gpus_are_needed_per_pea() -> None:
    with pytest.raises(PlacementError, match="needs 2 GPU"):
        place([{"name": "wide", "hosts": "gpu", "gpus": 2, "parallel": 2}], fleet())
    assert parts(place([{"name": "wide", "hosts": "gpu", "gpus": 1, "parallel": 2}], fleet())["wide"]) == [
        ("g1", None, 1, (0,)), ("g2", None, 1, (0,))]
    assert place([{"name": "wide", "hosts": "g1", "gpus": 1, "parallel": 2}], fleet())["wide"].gpu_ids == (0, 1)


def test_apply_gives_a_spread_pod_its_parts_and_group() -> None:
    inv = fleet({"g1": 2, "g2": 1})
    flow = {"pods": [{"name": "enc", "uses": "E", "hosts": "gpu", "gpus": 1, "parallel": 2},
                     {"name": "idx", "uses": "_index", "hosts": "cpu", "shards": 2}]}
    placement = place(pod_specs(flow), inv, gateway={"host": "c1"})
    concrete = {p["name"]: p for p in apply(flow, placement, inv)["pods"]}
    assert concrete["enc"]["host"] == "10.9.0.10:8000" and "env" not in concrete["enc"]
    assert concrete["enc"]["spread"] == {
        "parts": [{"host": "10.9.0.10:8000", "replicas": 1, "gpu_ids": [0]},
                  {"host": "10.9.0.11:8000", "replicas": 1, "gpu_ids": [0]}],
        "hosts": [{"host": "10.9.0.10:8000", "free_gpu_ids": [1]}, {"host": "10.9.0.11:8000"}]}
    # a part on the Gateway's host goes through its daemon too
    assert concrete["idx"]["spread"]["parts"] == [{"host": "10.9.1.1:8000", "replicas": 1, "shard": 0},
                                                  {"host": "10.9.1.2:8000", "replicas": 1, "shard": 1}]
    assert "fallback_hosts" not in concrete["enc"] and "hosts" not in concrete["idx"]


def test_host_pins_a_pod_and_foreign_addresses_pass_through() -> None:
    placement = place([{"name": "a", "host": "c3"}, {"name": "b", "host": "198.51.100.7:8000"}, {"name": "c"}], fleet())
    assert (placement["a"].host, placement["a"].target) == ("c3", "10.9.1.3:8000")
    assert (placement["b"].host, placement["b"].target) == (None, "198.51.100.7:8000")
    assert (placement["c"].host, placement["c"].target) == (None, None)
    with pytest.raises(PlacementError, match="host c1 has 0 free"):
        place([{"name": "x", "host": "c1", "gpus": 1}], fleet())


def test_bad_requests_name_the_pod() -> None:
    with pytest.raises(PlacementError, match="'a'.*either `host:` or `hosts:`"):
        place([{"name": "a", "host": "c1", "hosts": "cpu"}], fleet())
    with pytest.raises(PlacementError, match="'a'.*matches no host or group"):
        place([{"name": "a", "hosts": "tpu"}], fleet())


def test_apply_writes_host_and_drops_placement_keys() -> None:
    flow = {"version": "1", "with": {"protocol": "http"},
            "pods": [{"name": "_index", "uses": "Idx", "hosts": "gpu", "gpus": 1, "env": {"A": "1"}},
                     {"name": "local", "uses": "X"}]}
    concrete = apply(flow, place(pod_specs(flow), fleet()))
    assert concrete == {"version": "1", "with": {"protocol": "http"}, "pods": [
        {"name": "_index", "uses": "Idx", "gpus": 1, "env": {"A": "1", "CUDA_VISIBLE_DEVICES": "0"},
         "host": "10.9.0.10:8000"},
        {"name": "local", "uses": "X"},
    ]}
    assert flow["pods"][0]["hosts"] == "gpu"  # the input is left alone


def test_mapping_form_and_executors_key_are_accepted() -> None:
    assert [p["name"] for p in pod_specs({"executors": {"a": {"uses": "X"}, "b": None}})] == ["a", "b"]


def test_the_gateway_is_placed_like_a_pod_after_the_pods() -> None:
    pods = [{"name": "a", "hosts": "cpu", "parallel": 3}, {"name": "b", "hosts": "cpu"}]
    # the least loaded cpu host once the Pods are placed (c1 has 2 Peas, c2 and c3 one each)
    assert place(pods, fleet(), gateway={"hosts": "cpu"}).gateway.host == "c2"
    assert place(pods, fleet(), gateway={"host": "c1"}).gateway.host == "c1"
    assert place(pods, fleet(), gateway={"hosts": "gpu[1]"}).gateway.host == "g2"  # an Ansible pattern
    assert place(pods, fleet(), gateway={}).gateway.host == "g1"  # any host: the least loaded, first
    assert place(pods, fleet()).gateway is None  # not asked: a Flow run by its caller
    with pytest.raises(PlacementError, match="'gateway'.*not a host"):
        place(pods, fleet(), gateway={"host": "nowhere"})


def test_a_gateway_key_never_reaches_the_concrete_flow() -> None:
    flow = {"gateway": {"hosts": "cpu"}, "pods": [{"name": "a", "hosts": "cpu"}]}
    placement = place(pod_specs(flow), fleet(), gateway=flow["gateway"])
    assert "gateway" not in apply(flow, placement)


def test_stateless_pods_placed_by_group_get_the_rest_of_it_as_fallbacks() -> None:
    inv = fleet()
    pods = [{"name": "enc", "hosts": "cpu"}, {"name": "_index", "uses": "_index", "hosts": "cpu"},
            {"name": "pinned", "host": "c3"}]
    placement = place(pods, inv, gateway={"host": "g1"})
    assert placement["enc"].fallbacks == ("c2", "c3")  # least loaded first (c2 holds the index)
    assert placement["_index"].fallbacks == ()  # its data lives on its host: never moved
    assert placement["pinned"].fallbacks == ()
    concrete = {p["name"]: p for p in apply({"pods": pods}, placement, inv)["pods"]}
    assert concrete["enc"]["fallback_hosts"] == ["10.9.1.2:8000", "10.9.1.3:8000"]
    assert "fallback_hosts" not in concrete["_index"]


def test_pods_on_the_gateways_host_run_in_the_flows_process() -> None:
    inv = fleet()
    pods = [{"name": "a", "hosts": "cpu"}, {"name": "b", "host": "c1"}]
    placement = place(pods, inv, gateway={"host": "c1"})
    concrete = {p["name"]: p for p in apply({"pods": pods}, placement, inv)["pods"]}
    assert "host" not in concrete["a"] and "host" not in concrete["b"]  # both on c1, with the Gateway
    assert placement["a"].host == "c1"

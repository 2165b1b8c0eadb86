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


def test_replicas_count_as_load() -> None:
    pods = [{"name": "big", "hosts": "cpu", "parallel": 3}, {"name": "a", "hosts": "cpu"}, {"name": "b", "hosts": "cpu"},
            {"name": "c", "hosts": "cpu", "shards": 2}]
    placement = place(pods, fleet())
    assert [(a.host, a.peas) for a in placement] == [("c1", 3), ("c2", 1), ("c3", 1), ("c2", 2)]
    # `replicas` is the spec's other name for `parallel`: the same load
    pods[0] = {"name": "big", "hosts": "cpu", "replicas": 3}
    assert [(a.host, a.peas) for a in place(pods, fleet())] == [("c1", 3), ("c2", 1), ("c3", 1), ("c2", 2)]


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


def test_gpus_are_needed_per_pea() -> None:
    with pytest.raises(PlacementError, match="needs 4 GPU"):
        place([{"name": "wide", "hosts": "gpu", "gpus": 2, "parallel": 2}], fleet())
    assert place([{"name": "wide", "hosts": "gpu", "gpus": 1, "parallel": 2}], fleet())["wide"].gpu_ids == (0, 1)


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
    pods = [{"name": "a", "hosts": "cpu", "parallel": 2}, {"name": "b", "hosts": "cpu"}]
    # the least loaded cpu host once the Pods are placed (c1 has 2 Peas, c2 has 1)
    assert place(pods, fleet(), gateway={"hosts": "cpu"}).gateway.host == "c3"
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

"""The static plan of a Flow, without processes: roles, parts to join, who binds and who connects."""

from __future__ import annotations

import pytest

from jinad_fab import Flow
from jinad_fab.flow.static import PORT_HEAD_OUT, PORT_IN, dns_label, plan


def _by_name(p):
    return {s["name"]: s for s in p["services"]}


def test_a_join_after_shards_waits_for_every_part_and_the_gateway_for_every_leaf():
    f = (Flow(protocol="http", port_http=9000)
         .add(name="Enc_1", uses="_pass", needs="gateway")
         .add(name="idx", uses="_index", shards=3, needs="gateway")
         .needs(["Enc_1", "idx"], name="join"))
    s = _by_name(plan(f))
    assert list(s) == ["gateway", "enc-1", "idx", "idx-shard-0", "idx-shard-1", "idx-shard-2", "join"]
    # one part from enc-1, one per shard of idx
    assert s["join"]["args"]["num_parts"] == 4 and s["join"]["args"]["upstream"] == ["Enc_1", "idx"]
    assert s["gateway"]["args"]["num_parts"] == 1 and s["gateway"]["args"]["upstream"] == ["join"]
    assert s["gateway"]["args"]["targets"] == [[f"tcp://enc-1:{PORT_IN}"], [f"tcp://idx:{PORT_IN}"]]
    head = s["idx"]["args"]
    assert head["targets"] == [{"bind": f"tcp://0.0.0.0:{PORT_HEAD_OUT + i}"} for i in range(3)]
    assert head["route"]["polling"]["/search"] == "all" and head["route"]["polling"]["*"] == "id"
    shard = s["idx-shard-2"]["args"]
    assert shard["in_connect"] == f"tcp://idx:{PORT_HEAD_OUT + 2}" and shard["shard_id"] == 2
    assert shard["targets"] == [[f"tcp://join:{PORT_IN}"]] and s["idx-shard-2"]["stateful"]
    assert s["join"]["args"]["targets"] == [[f"tcp://gateway:{s['gateway']['ports']['results']}"]]
    # control sockets are for the container's own probe only
    assert {svc["args"]["ctrl_host"] for svc in s.values()} == {"127.0.0.1"}


def test_the_results_port_never_takes_a_port_the_flow_publishes():
    f = Flow(port_http=5557, port_native=5558).add(uses="_pass")
    gw = _by_name(plan(f))["gateway"]
    assert gw["ports"]["results"] not in (5556, 5557, 5558)


@pytest.mark.parametrize(("name", "label"), [("Encoder", "encoder"), ("my_pod.v2", "my-pod-v2"), ("2fast", "pod-2fast")])
def test_pod_names_become_dns_labels(name, label):
    assert dns_label(name) == label


def test_two_pods_that_would_share_a_service_name_are_refused():
    from jinad_fab.flow.static import NotExportable

    with pytest.raises(NotExportable, match="get the same service name 'a-b'"):
        plan(Flow().add(name="a_b").add(name="a-b"))
    with pytest.raises(NotExportable, match="Pod 'x' and Pod 'x-peas-1' get the same service name 'x-peas-1'"):
        plan(Flow().add(name="x-peas-1").add(name="x", parallel=2))
    with pytest.raises(NotExportable, match="Pod 'gateway_' and the Gateway"):
        plan(Flow().add(name="gateway_"))

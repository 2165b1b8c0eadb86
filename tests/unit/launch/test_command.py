"""The launch command line: built from structured values, read back by launch's own parser."""

from __future__ import annotations

import json

import pytest

from jinad_fab.launch.__main__ import parser
from jinad_fab.launch.command import launch_argv


def test_a_pod_round_trips_with_its_overrides():
    argv = launch_argv("pod", args={"name": "enc", "uses": "Enc", "host": "10.0.0.1", "port_in": 7},
                       host="0.0.0.0", workspace="/workspace", ports={"port_in": 0, "port_ctrl": 9000},
                       status_file="/s/p.json", log_json=True)
    ns = parser().parse_args(argv)
    assert ns.kind == "pod" and ns.status_file == "/s/p.json" and ns.log_json
    # host and workspace are the runtime's say; a port of 0 leaves the one in args (or the object's pick)
    assert json.loads(ns.args_json) == {"name": "enc", "uses": "Enc", "host": "0.0.0.0", "port_in": 7,
                                        "workspace": "/workspace", "port_ctrl": 9000}


def test_a_flow_round_trips_and_ignores_pod_args():
    argv = launch_argv("flow", args={"ignored": True}, yaml="flows/a.yml", host="127.0.0.1",
                       ports={"port_native": 6000, "port_http": None})
    ns = parser().parse_args(argv)
    assert (ns.kind, ns.yaml, ns.host, ns.port_native, ns.port_http) == ("flow", "flows/a.yml", "127.0.0.1", 6000,
                                                                          None)
    assert ns.args_json == "{}" and not ns.log_json
    assert ns.ctrl_host is None and ns.port_ctrl is None  # the control socket: loopback, a port of its own
    ns = parser().parse_args(launch_argv("flow", yaml="a.yml", ports={"port_ctrl": 7000}, ctrl_host="0.0.0.0"))
    assert (ns.port_ctrl, ns.ctrl_host) == (7000, "0.0.0.0")


@pytest.mark.parametrize("kind", ["zygote", "daemon", ""])
def test_only_objects_are_launched(kind):
    with pytest.raises(ValueError):
        launch_argv(kind, args={})


def test_a_flow_without_yaml_is_refused():
    with pytest.raises(ValueError):
        launch_argv("flow")


def test_a_static_service_and_its_probe_round_trip():
    ns = parser().parse_args(launch_argv("static", yaml="/jinad/flow/flow.yml", role="idx-shard-1", replica=2))
    assert (ns.kind, ns.yaml, ns.role, ns.replica) == ("static", "/jinad/flow/flow.yml", "idx-shard-1", 2)
    ns = parser().parse_args(launch_argv("probe", address="tcp://127.0.0.1:5556"))
    assert (ns.kind, ns.address) == ("probe", "tcp://127.0.0.1:5556")
    with pytest.raises(ValueError):
        launch_argv("static", yaml="flow.yml")  # no role

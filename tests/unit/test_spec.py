"""The Pod and Flow spec: one list of options, did-you-mean, types, defaults, aliases, YAML round trip."""

import pytest
import yaml
from pydantic import ValidationError

from jinad_fab import Flow
from jinad_fab.errors import BadConfig
from jinad_fab.flow import builder, remote_pods
from jinad_fab.flow.spec import FlowSpec, PodOptions, PodSpec, parse
from jinad_fab.runtime.pod import routing
from jinad_fab.schemas import PeaCreate, PodCreate


@pytest.mark.parametrize("call,match", [
    (lambda: Flow().add(paralel=2), r"unknown argument 'paralel' \(did you mean 'parallel'\?\)"),
    (lambda: Flow().add(name="a", use="_pass"), r"'use' \(did you mean 'uses'\?\)"),
    (lambda: Flow().add(replica=2), r"'replica' \(did you mean 'replicas'\?\)"),
    (lambda: Flow(protocl="http"), r"Flow: unknown argument 'protocl' \(did you mean 'protocol'\?\)"),
    (lambda: Flow().add(zzz=1), r"unknown argument 'zzz'; known: "),
])
def test_unknown_keys_are_refused_with_the_closest_known_one(call, match):
    with pytest.raises(BadConfig, match=match):
        call()


def test_the_daemon_body_refuses_unknown_keys_the_same_way():
    with pytest.raises(ValidationError, match=r"'paralel' \(did you mean 'parallel'\?\)"):
        PodCreate.model_validate({"name": "p", "paralel": 2})
    with pytest.raises(ValidationError, match="unknown argument 'shards'"):
        PeaCreate.model_validate({"shards": 2})  # a Pea has no shards


def test_yaml_typos_name_the_file_the_pod_and_the_closest_key(tmp_path):
    path = tmp_path / "flow.yml"
    path.write_text("!Flow\nversion: 1\npods:\n  - name: enc\n    paralel: 2\n")
    with pytest.raises(BadConfig) as err:
        Flow.load_config(str(path))
    msg = str(err.value)
    assert str(path) in msg and "pods[0] (enc)" in msg and "did you mean 'parallel'" in msg
    path.write_text("!Flow\nversion: 1\nwith:\n  timout_ready: 5\npods:\n  - name: enc\n")
    with pytest.raises(BadConfig, match="did you mean 'timeout_ready'"):
        Flow.load_config(str(path))
    path.write_text("!Flow\nversion: 1\npod:\n  - name: enc\n")
    with pytest.raises(BadConfig, match="did you mean 'pods'"):
        Flow.load_config(str(path))


@pytest.mark.parametrize("kwargs,match", [
    ({"parallel": True}, "parallel=True"),
    ({"shards": 65}, "less than or equal to 64"),
    ({"timeout_ready": 0}, "timeout_ready=0"),
    ({"env": {"A": 1}}, r"env\['A'\]=1: Input should be a valid string"),
    ({"polling": "some"}, "polling='some'"),
    ({"polling": {"/search": "sometimes"}}, "polling"),
    ({"gpus": "0,,bad id"}, "gpus"),
    ({"gpus": -1}, "negative"),
    ({"needs": 3}, "needs"),
    ({"parallel": 2, "replicas": 2}, "'parallel' and 'replicas' name the same option"),
])
def test_types_are_checked_before_anything_starts(kwargs, match):
    with pytest.raises(BadConfig, match=match):
        Flow().add(name="p", **kwargs)


def test_every_option_has_a_type_a_default_and_a_meaning():
    for model in (PodSpec, FlowSpec):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} says nothing about what it means"
            assert not info.is_required(), f"{model.__name__}.{name} has no default"
    assert PodSpec().parallel == 1 and PodSpec().shards == 1 and PodSpec().uses == "_pass"
    assert FlowSpec().protocol == "native" and FlowSpec().timeout_ready == 60.0
    with pytest.raises(ValidationError):
        PodSpec().parallel = 3  # frozen: a spec is a value


def test_the_spec_is_the_only_list_of_pod_options():
    # what a Pod's processes take, the daemon's POST /pods body and a remote Pod's request: one set
    wire = set(PodOptions.model_fields)
    assert set(builder.POD_PROCESS_KEYS) == wire
    assert wire <= set(PodCreate.model_fields)
    assert set(PodCreate.model_fields) - wire == {"name", "port_in", "port_ctrl", "num_parts", "upstream", "curve",
                                                           "lease", "changeable"}
    assert set(PodSpec.model_fields) - wire == {"name", "needs", "host", "port_expose", "upload_files",
                                                "quiet_remote_logs", "workspace", "token", "ca_file", "resources",
                                                "tls", "fallback_hosts", "spread"}
    for stale in ("FLOW_KEYS", "ADD_KEYS"):
        assert not hasattr(builder, stale)


def test_a_remote_pod_sends_every_option_its_processes_take(tmp_path):
    session = remote_pods.HostSession(remote_pods.daemon_address("127.0.0.1:1"), token=None, base_dir=str(tmp_path),
                                      quiet=True)
    f = Flow().add(name="far", host="127.0.0.1:1", replicas=2, shards=2, polling="any", gpus=[0, 1],
                   timeout_ready=9, env={"A": "b"}, uses_with={"k": 1})
    pod = remote_pods.RemotePod(f.pods["far"], session, num_parts=1, quiet_logs=True)
    body = PodCreate.model_validate(pod.args)  # exactly what the daemon accepts
    assert (body.parallel, body.shards, body.polling, body.gpus, body.timeout_ready) == (2, 2, "any", [0, 1], 9.0)
    assert body.env == {"A": "b"} and body.uses_with == {"k": 1} and body.upstream == []
    session.client.close()


def test_replicas_is_another_name_for_parallel_everywhere():
    assert parse(PodSpec, {"replicas": 4}, "x").parallel == 4
    assert PodCreate.model_validate({"replicas": 4}).parallel == 4
    f = Flow().add(name="a", replicas=4)
    assert f.pods["a"]["parallel"] == 4 and "replicas" not in f.pods["a"]
    assert "parallel: 4" in yaml.safe_dump(f.to_dict())


@pytest.mark.parametrize("polling,table", [
    (None, {"/search": "all", "/dump": "all", "*": "id"}),
    ("all", {"*": "all"}),
    ("any", {"*": "id"}),
    ({"/index": "all"}, {"/search": "all", "/dump": "all", "/index": "all", "*": "id"}),
    ({"/search": "any", "*": "all"}, {"/search": "id", "*": "all"}),
])
def test_polling_becomes_the_heads_routing_table(polling, table):
    assert routing(polling) == table


def test_yaml_round_trip_keeps_every_option_and_drops_secrets(tmp_path):
    f = (Flow(protocol="http", timeout_ready=5, token="s3cret", env={"X": "1"})
         .add(name="enc", replicas=2, polling={"/search": "all", "*": "any"}, gpus="0,2", timeout_ready=30,
              env={"A": "b"}, uses_with={"dim": 8}, host="gpu1:8000", token="pod-secret")
         .add(name="idx", uses="_index", shards=3, polling="any", needs=["enc", "gateway"]))
    path = tmp_path / "f.yml"
    f.save_config(str(path))
    text = path.read_text()
    assert "s3cret" not in text and "pod-secret" not in text and "token" not in text
    g = Flow.load_config(str(path))
    assert g.args == {k: v for k, v in f.args.items() if k != "token"}
    expected = {name: {k: v for k, v in spec.items() if k != "token"} for name, spec in f.pods.items()}
    assert g.pods == expected
    assert g.to_dict() == f.to_dict()


@pytest.mark.parametrize("kwargs,match", [
    ({"upload_files": ["m.npz"]}, "upload_files applies to a Pod on a jinad host"),
    ({"token": "t"}, "token applies to a Pod on a jinad host"),
    ({"port_expose": 8000}, "port_expose applies to a Pod on a jinad host"),
    ({"quiet_remote_logs": True}, "quiet_remote_logs applies to a Pod on a jinad host"),
    ({"ca_file": "ca.pem"}, "ca_file applies to a Pod on a jinad host"),
    ({"host": "gpu1:8000", "workspace": "/w"}, "workspace applies to a Pod this Flow runs itself"),
])
def test_options_that_cannot_apply_where_the_pod_runs_are_refused_not_ignored(kwargs, match):
    with pytest.raises(BadConfig, match=match):
        Flow().add(name="p", **kwargs)


def test_where_an_option_applies_is_declared_on_the_field():
    only = {k: (info.json_schema_extra or {}).get("only") for k, info in PodSpec.model_fields.items()}
    assert {k for k, v in only.items() if v == "remote"} == {"ca_file", "port_expose", "upload_files",
                                                             "quiet_remote_logs", "token", "tls",
                                                             "fallback_hosts", "spread"}
    assert {k for k, v in only.items() if v == "local"} == {"workspace"}
    Flow().add(name="far", host="gpu1:8000", upload_files=["m.npz"], token="t", port_expose=8001)  # fine there


def test_the_flows_name_is_shown():
    assert repr(Flow(name="search").add(name="a")) == "<Flow 'search' stopped pods=['a']>"

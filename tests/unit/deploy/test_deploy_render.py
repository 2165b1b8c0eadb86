"""Sandboxed rendering: concrete Flow YAML, the unit file, and what the sandbox refuses."""

from __future__ import annotations

import pytest
import yaml

from jinad_fab import templating
from jinad_fab.deploy.inventory import Inventory
from jinad_fab.deploy.playbooks import PLAYBOOKS, playbook_path
from jinad_fab.deploy.render import Tagged, load_yaml, render_flow, render_string, render_unit
from jinad_fab.errors import BadConfig

INV = Inventory.from_ansible_json({
    "_meta": {"hostvars": {
        "gpu-1": {"ansible_host": "10.9.0.11", "jinad_gpus": 1, "jinad_runtimes": ["process", "docker"]},
        "cpu-1": {"ansible_host": "10.9.0.21", "jinad_port": 8100, "jinad_home": "/srv/jinad"},
    }},
    "gpu": {"hosts": ["gpu-1"]},
    "cpu": {"hosts": ["cpu-1"]},
})

FLOW = """!Flow
version: '1'
with:
  protocol: http
pods:
  - name: encode
    uses: Encoder
    hosts: cpu
  - name: _index
    uses: Indexer
    hosts: gpu
    gpus: 1
    needs: encode
"""


def test_render_flow_places_pods_and_keeps_the_flow_tag() -> None:
    rendered = render_flow(FLOW, INV, inventory_name="test")
    assert rendered.text.startswith("# Concrete Flow rendered by jinad-fab")
    assert "#   _index -> gpu-1 (GPUs 0)" in rendered.text
    data = load_yaml(rendered.text)
    assert isinstance(data, Tagged) and data.tag == "!Flow"
    pods = {p["name"]: p for p in data.value["pods"]}
    assert pods["encode"] == {"name": "encode", "uses": "Encoder", "host": "10.9.0.21:8100"}
    assert pods["_index"]["host"] == "10.9.0.11:8000"
    assert pods["_index"]["env"] == {"CUDA_VISIBLE_DEVICES": "0"}
    assert pods["_index"]["needs"] == "encode"


def test_rendered_flow_is_accepted_by_the_flow_loader() -> None:
    from jinad_fab.flow.yaml import flow_from_dict

    text = render_flow(FLOW, INV).text
    data = yaml.load(text, Loader=_FlowTagLoader)  # noqa: S506 - a SafeLoader subclass
    flow = flow_from_dict(data)
    assert flow.pods["_index"]["host"] == "10.9.0.11:8000"
    assert flow.pods["encode"]["host"] == "10.9.0.21:8100"


class _FlowTagLoader(yaml.SafeLoader):
    pass


_FlowTagLoader.add_constructor("!Flow", lambda loader, node: loader.construct_mapping(node, deep=True))


def test_a_flow_file_may_itself_be_a_template_over_the_inventory() -> None:
    source = "version: '1'\npods:\n  - name: a\n    host: {{ groups.cpu[0] }}\n"
    data = load_yaml(render_flow(source, INV).text)
    assert data["pods"][0]["host"] == "10.9.0.21:8100"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ groups.__class__.__init__.__globals__ }}",
        "{% set x = groups.pop('cpu') %}",  # immutable sandbox: no mutating the context
    ],
)
def test_the_sandbox_refuses_unsafe_templates(source: str) -> None:
    with pytest.raises(BadConfig):
        render_string(source, {"groups": {"cpu": ["a"]}})


def test_undefined_variables_are_errors_not_empty_strings() -> None:
    with pytest.raises(BadConfig, match="'nope' is undefined"):
        render_string("host: {{ nope }}", {})
    with pytest.raises(BadConfig, match="no attribute 'tpu'"):
        render_flow("pods:\n  - name: a\n    host: {{ groups.tpu[0] }}\n", INV)


def test_yaml_is_loaded_safely() -> None:
    with pytest.raises(BadConfig):
        load_yaml("!!python/object/apply:os.system ['true']")


def test_unit_uses_role_defaults_and_host_vars() -> None:
    unit = render_unit(INV["gpu-1"])
    assert "ExecStart=/opt/jinad/current/venv/bin/jinad" in unit
    assert "EnvironmentFile=/var/lib/jinad/jinad.env" in unit
    assert "SupplementaryGroups=docker" in unit  # the docker runtime is offered there
    cpu = render_unit(INV["cpu-1"])
    assert "WorkingDirectory=/srv/jinad" in cpu and "on port 8100" in cpu
    assert "docker" not in cpu


def test_every_shipped_asset_is_found_through_importlib_resources() -> None:
    for name in PLAYBOOKS:
        assert templating.asset_exists("playbooks", f"{name}.yml")
    for role in ("jinad", "docker_engine", "nvidia_toolkit"):
        for part in ("defaults/main.yml", "tasks/main.yml", "meta/main.yml", "meta/argument_specs.yml", "README.md"):
            assert templating.asset_exists("roles", role, *part.split("/")), (role, part)
    assert templating.asset_exists("templates", "flow.yml.j2")
    assert "roles_path" in templating.read_asset("ansible.cfg")
    with templating.assets_dir() as root:
        assert (root / "inventories" / "local" / "hosts.yml").is_file()
        with pytest.raises(templating.AssetNotFound):
            playbook_path(root, "../../etc/passwd")


def test_render_flow_places_the_gateway_and_names_it_in_the_header() -> None:
    from jinad_fab.deploy.deployment import spec_hash
    from jinad_fab.deploy.inventory import Inventory
    from jinad_fab.deploy.render import render_flow

    inv = Inventory.from_ansible_json({"_meta": {"hostvars": {"c1": {"ansible_host": "10.9.1.1"},
                                                              "c2": {"ansible_host": "10.9.1.2"}}},
                                       "cpu": {"hosts": ["c1", "c2"]}})
    src = "!Flow\nversion: '1'\ngateway: {hosts: cpu}\npods:\n  - name: a\n    hosts: cpu\n"
    r = render_flow(src, inv, place_gateway=True)
    assert r.placement.gateway.host == "c2" and "#   gateway -> c2" in r.text
    assert "#   a -> c1 (if lost: c2)" in r.text
    assert "gateway:" not in r.text.split("!Flow", 1)[1]
    assert render_flow(src, inv, gateway="c1").placement.gateway.host == "c1"
    # one spec, one hash, whatever the inventory is called; a file's content is part of it
    files = {"flow.yml": src.encode()}
    assert spec_hash(r, files) == spec_hash(render_flow(src, inv, inventory_name="elsewhere"), files)
    assert spec_hash(r, files) != spec_hash(r, {"flow.yml": src.encode() + b"\n"})


def test_live_changes_are_found_only_where_a_running_flow_can_take_them() -> None:
    from jinad_fab.deploy.deployment import live_changes

    base = {"version": "1", "with": {"protocol": "http"},
            "pods": [{"name": "enc", "uses": "Enc", "uses_with": {"v": 1}, "host": "10.0.0.1:8000"},
                     {"name": "idx", "uses": "_index"}]}

    def changed(**pod):
        new = {**base, "pods": [{**base["pods"][0], **pod}, base["pods"][1]]}
        return live_changes(base, new)

    assert live_changes(base, base) == []
    assert changed(uses_with={"v": 2}) == [{"kind": "rolling_update", "pod": "enc", "uses": None,
                                            "uses_with": {"v": 2}}]
    assert changed(parallel=3) == [{"kind": "scale", "pod": "enc", "replicas": 3}]
    assert changed(host="10.0.0.2:8000") is None  # moved: a new release of the Flow
    assert changed(env={"A": "1"}) is None
    assert live_changes(base, {**base, "with": {"protocol": "native"}}) is None
    assert live_changes(base, {**base, "pods": base["pods"][:1]}) is None
    assert live_changes("not: [valid", base) is None
    # a spread Pod scaled: its parts follow its count, its group stays; anything else moved is a new release
    group = [{"host": "10.0.0.1:8000"}, {"host": "10.0.0.2:8000"}]
    two = {"parts": [{"host": "10.0.0.1:8000"}, {"host": "10.0.0.2:8000"}], "hosts": group}
    three = {"parts": [{"host": "10.0.0.1:8000", "replicas": 2}, {"host": "10.0.0.2:8000"}], "hosts": group}
    spread = {**base, "pods": [{**base["pods"][0], "parallel": 2, "spread": two}, base["pods"][1]]}
    again = {**base, "pods": [{**base["pods"][0], "parallel": 3, "spread": three}, base["pods"][1]]}
    assert live_changes(spread, again) == [{"kind": "scale", "pod": "enc", "replicas": 3}]
    moved = {**base, "pods": [{**base["pods"][0], "parallel": 2, "spread": {**two, "hosts": group[:1]}},
                              base["pods"][1]]}
    assert live_changes(spread, moved) is None  # another group
    assert live_changes(spread, {**spread, "pods": [{**spread["pods"][0], "spread": three}, base["pods"][1]]}) is None


def test_only_pods_on_other_https_daemons_get_the_fleet_ca(tmp_path) -> None:
    from jinad_fab.deploy.inventory import Inventory
    from jinad_fab.deploy.render import render_flow

    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n")
    tls = {"jinad_scheme": "https", "jinad_ca_file": str(ca)}
    inv = Inventory.from_ansible_json({"_meta": {"hostvars": {"c1": {"ansible_host": "10.9.1.1", **tls},
                                                              "c2": {"ansible_host": "10.9.1.2", **tls}}},
                                       "cpu": {"hosts": ["c1", "c2"]}})
    src = "!Flow\nversion: '1'\ngateway: {host: c2}\npods:\n  - name: a\n    host: c1\n  - name: b\n    host: c2\n"
    pods = {p["name"]: p for p in render_flow(src, inv).flow.value["pods"]}
    assert pods["a"]["host"] == "https://10.9.1.1:8000" and pods["a"]["ca_file"].endswith(".pem")
    assert "host" not in pods["b"] and "ca_file" not in pods["b"]  # runs beside the Gateway, in its Flow

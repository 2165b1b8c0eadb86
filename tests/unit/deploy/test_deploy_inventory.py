"""Inventory JSON (as `ansible-inventory --list` prints it) -> hosts, groups, patterns, tokens."""

from __future__ import annotations

import pytest

from jinad_fab.deploy.inventory import Inventory
from jinad_fab.errors import BadConfig, BadInput

ANSIBLE_JSON = {
    "_meta": {
        "hostvars": {
            "gpu-1": {"ansible_host": "10.9.0.11", "jinad_gpus": 2, "jinad_port": 8100},
            "gpu-2": {"ansible_host": "10.9.0.12", "jinad_gpus": "1"},
            "cpu-1": {"ansible_host": "10.9.0.21", "ansible_port": 2222, "ansible_user": "ops"},
            "cpu-2": {"ansible_host": "fd00::22", "jinad_address": "{{ ansible_host }}"},
        }
    },
    "all": {"children": ["ungrouped", "fleet"]},
    "fleet": {"children": ["gpu", "cpu"]},
    "gpu": {"hosts": ["gpu-1", "gpu-2"]},
    "cpu": {"hosts": ["cpu-1", "cpu-2"], "children": ["rack1"]},
    "rack1": {"hosts": ["cpu-1"]},
    "ungrouped": {},
}


@pytest.fixture
def inv() -> Inventory:
    return Inventory.from_ansible_json(ANSIBLE_JSON)


def test_groups_include_their_children_transitively(inv: Inventory) -> None:
    assert set(inv.groups["fleet"]) == {"gpu-1", "gpu-2", "cpu-1", "cpu-2"}
    assert inv["cpu-1"].groups == {"all", "fleet", "cpu", "rack1"}
    assert inv["gpu-2"].groups == {"all", "fleet", "gpu"}


def test_host_properties_come_from_ansible_vars(inv: Inventory) -> None:
    gpu1 = inv["gpu-1"]
    assert (gpu1.address, gpu1.jinad_port, gpu1.gpus) == ("10.9.0.11", 8100, 2)
    assert gpu1.daemon_url == "http://10.9.0.11:8100"
    assert inv["gpu-2"].gpus == 1  # strings from INI inventories are numbers too
    cpu1 = inv["cpu-1"]
    assert (cpu1.ssh_port, cpu1.ssh_user, cpu1.gpus, cpu1.connection) == (2222, "ops", 0, "ssh")


def test_simple_var_references_resolve_and_ipv6_is_bracketed(inv: Inventory) -> None:
    assert inv["cpu-2"].address == "fd00::22"
    assert inv["cpu-2"].daemon_url == "http://[fd00::22]:8000"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, ["gpu-1", "gpu-2", "cpu-1", "cpu-2"]),
        ("all", ["gpu-1", "gpu-2", "cpu-1", "cpu-2"]),
        ("gpu", ["gpu-1", "gpu-2"]),
        ("gpu:cpu", ["gpu-1", "gpu-2", "cpu-1", "cpu-2"]),
        ("all:!gpu-2", ["gpu-1", "cpu-1", "cpu-2"]),
        ("cpu:&rack1", ["cpu-1"]),
        ("gpu-*", ["gpu-1", "gpu-2"]),
        ("cpu-2,gpu-1", ["cpu-2", "gpu-1"]),  # Ansible's order: the pattern's
        ("gpu[0]", ["gpu-1"]),
        ("gpu[-1]", ["gpu-2"]),
        ("cpu[0:1]", ["cpu-1", "cpu-2"]),
        ("fleet[1:]", ["gpu-2", "cpu-1", "cpu-2"]),
        ("~gpu-\\d", ["gpu-1", "gpu-2"]),
        ("~(cpu|gpu)-2", ["gpu-2", "cpu-2"]),
        ("gpu[0],cpu,!cpu-1", ["gpu-1", "cpu-2"]),
        ("gpu:tpu", ["gpu-1", "gpu-2"]),  # like ansible: a term matching nothing is skipped
    ],
)
def test_select_understands_ansible_patterns(inv: Inventory, pattern, expected) -> None:
    assert [h.name for h in inv.select(pattern)] == expected


def test_select_names_the_known_groups_when_nothing_matches(inv: Inventory) -> None:
    with pytest.raises(BadInput, match="matches no host or group.*gpu"):
        inv.select("tpu")
    with pytest.raises(BadInput, match="No hosts matched the subscripted pattern 'gpu.7.'"):
        inv.select("gpu[7]")
    with pytest.raises(BadInput, match="bad host pattern"):
        inv.select("~gpu-(")
    with pytest.raises(BadInput, match="no host 'nope'"):
        inv["nope"]


def test_bad_gpu_count_is_a_config_error() -> None:
    data = {"_meta": {"hostvars": {"h": {"jinad_gpus": "many"}}}, "all": {"hosts": ["h"]}}
    with pytest.raises(BadConfig, match="jinad_gpus must be a number"):
        _ = Inventory.from_ansible_json(data)["h"].gpus


def test_token_comes_from_a_plain_var_or_the_generated_file(tmp_path) -> None:
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "jinad_token").write_text("s3cret-from-file\n")
    (tmp_path / "other").write_text("s3cret-other")
    data = {
        "_meta": {"hostvars": {
            "a": {"jinad_token": "s3cret-var"},
            "b": {"jinad_token": "{{ lookup('password', 'x') }}"},  # only Ansible can run this: use the file
            "c": {"jinad_token_file": "other"},
        }},
        "all": {"hosts": ["a", "b", "c"]},
    }
    inv = Inventory.from_ansible_json(data, source=tmp_path)
    assert inv.token_for(inv["a"]) == "s3cret-var"
    assert inv.token_for(inv["b"]) == "s3cret-from-file"
    assert inv.token_for(inv["c"]) == "s3cret-other"
    assert Inventory.from_ansible_json(data).token_for(inv["b"]) is None


def test_https_hosts_their_ca_bundle_and_where_placed_pods_go(tmp_path) -> None:
    from jinad_fab.deploy.placement import _target

    data = {
        "_meta": {"hostvars": {
            "tls": {"ansible_host": "10.9.0.31", "jinad_scheme": "https", "jinad_port": 8443,
                    "jinad_ca_file": "pki/ca.pem"},
            "v6": {"ansible_host": "fd00::31", "jinad_scheme": "https", "jinad_ca_file": "/etc/fleet/ca.pem"},
            "plain": {"ansible_host": "10.9.0.32"},
            "bad": {"ansible_host": "10.9.0.33", "jinad_scheme": "ftp"},
        }},
        "all": {"hosts": ["tls", "v6", "plain", "bad"]},
    }
    inv = Inventory.from_ansible_json(data, source=tmp_path)
    assert inv["tls"].daemon_url == "https://10.9.0.31:8443" and inv["v6"].daemon_url == "https://[fd00::31]:8000"
    assert inv.ca_file_for(inv["tls"]) == str(tmp_path / "pki" / "ca.pem")  # relative to the inventory
    assert inv.ca_file_for(inv["v6"]) == "/etc/fleet/ca.pem" and inv.ca_file_for(inv["plain"]) is None
    assert _target(inv["tls"]) == "https://10.9.0.31:8443" and _target(inv["plain"]) == "10.9.0.32:8000"
    assert _target(inv["v6"]) == "https://[fd00::31]:8000"
    with pytest.raises(BadConfig, match="host bad: scheme 'ftp'"):
        _ = inv["bad"].daemon_url

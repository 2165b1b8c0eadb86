"""The inventory cache: Ansible's answer reused only while nothing it read has changed."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from jinad_fab.cli import inventory_cache
from jinad_fab.deploy.inventory import Inventory

HOSTS = """all:
  children:
    gpu:
      hosts:
        g1: {ansible_host: 10.0.0.1}
    cpu:
      hosts:
        c1: {ansible_host: 10.0.0.2, jinad_port: 8100}
"""


@pytest.fixture
def cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("JINAD_FAB_CACHE_DIR", str(d))
    return d


def _inv(tmp_path: pathlib.Path, text: str = HOSTS) -> pathlib.Path:
    d = tmp_path / "inv"
    d.mkdir(exist_ok=True)
    (d / "hosts.yml").write_text(text)
    return d / "hosts.yml"


def _entries(cache: pathlib.Path) -> list[pathlib.Path]:
    return sorted(cache.glob("*.json")) if cache.exists() else []


def _view(inv: Inventory) -> dict:
    return {n: (sorted(h.groups), h.address, h.jinad_port) for n, h in inv.hosts.items()}


def test_same_answer_as_ansible_then_reused_from_a_private_file(tmp_path, cache) -> None:
    path = _inv(tmp_path)
    first = inventory_cache.load(path)
    assert _view(first) == _view(Inventory.load(path))
    [entry] = _entries(cache)
    assert entry.stat().st_mode & 0o777 == 0o600 and cache.stat().st_mode & 0o777 == 0o700
    # prove the second load reads the entry: Ansible would not answer this
    data = json.loads(entry.read_text())
    data["_meta"]["hostvars"]["c1"]["jinad_port"] = 9999
    entry.write_text(json.dumps(data))
    assert inventory_cache.load(path).hosts["c1"].jinad_port == 9999


def test_a_changed_inventory_or_group_vars_file_is_parsed_again(tmp_path, cache) -> None:
    path = _inv(tmp_path)
    assert inventory_cache.load(path).hosts["c1"].jinad_port == 8100
    path.write_text(HOSTS.replace("8100", "8200"))
    assert inventory_cache.load(path).hosts["c1"].jinad_port == 8200
    (path.parent / "group_vars").mkdir()
    (path.parent / "group_vars" / "gpu.yml").write_text("jinad_port: 8300\n")
    assert inventory_cache.load(path).hosts["g1"].jinad_port == 8300
    assert len(_entries(cache)) == 3


def test_an_entry_others_could_have_written_is_not_trusted(tmp_path, cache) -> None:
    path = _inv(tmp_path)
    inventory_cache.load(path)
    [entry] = _entries(cache)
    data = json.loads(entry.read_text())
    data["_meta"]["hostvars"]["c1"]["jinad_port"] = 9999
    entry.write_text(json.dumps(data))
    entry.chmod(0o666)
    assert inventory_cache.load(path).hosts["c1"].jinad_port == 8100  # Ansible's answer, rewritten
    assert entry.stat().st_mode & 0o777 == 0o600


def test_scripts_plugins_and_vaults_are_never_cached(tmp_path, cache) -> None:
    script = tmp_path / "inv.py"
    script.write_text("#!/bin/sh\necho '{\"s\": {\"hosts\": [\"h1\"]}, \"_meta\": {\"hostvars\": {}}}'\n")
    script.chmod(0o755)
    assert list(inventory_cache.load(script).hosts) == ["h1"]
    assert _entries(cache) == []

    plugin = tmp_path / "p" / "hosts.yml"
    plugin.parent.mkdir()
    plugin.write_text("plugin: ansible.builtin.constructed\n")
    inventory_cache.load(plugin)  # an inventory plugin's answer can change with no file changing
    assert _entries(cache) == []

    vaulted = _inv(tmp_path)
    (vaulted.parent / "group_vars").mkdir()
    (vaulted.parent / "group_vars" / "all.yml").write_text("jinad_token: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n")
    assert inventory_cache.cache_dir() == cache
    with pytest.raises(inventory_cache._Uncacheable):
        inventory_cache.cache_key(vaulted)


def test_ansible_environment_is_part_of_the_key(tmp_path, cache, monkeypatch) -> None:
    path = _inv(tmp_path)
    key = inventory_cache.cache_key(path)
    monkeypatch.setenv("ANSIBLE_INVENTORY_ENABLED", "yaml")
    assert inventory_cache.cache_key(path) != key
    monkeypatch.delenv("ANSIBLE_INVENTORY_ENABLED")
    assert inventory_cache.cache_key(path) == key
    assert os.environ.get("JINAD_FAB_CACHE_DIR") == str(cache)

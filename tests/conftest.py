"""The suite's root conftest: loads the shared support plugin (tests/support: daemons of both
runtimes, free ports, the Docker engine) and marks each test with its tier from its folder."""

from __future__ import annotations

import pathlib

import pytest

pytest_plugins = ["tests.support.plugin"]

_TIERS = ("unit", "integration", "docker", "multihost")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = pathlib.Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True)
def _private_inventory_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`jinad-fab` caches Ansible's reading of inventories under the user's cache dir; tests (and
    the CLIs they start) keep theirs in a temporary folder instead."""
    monkeypatch.setenv("JINAD_FAB_CACHE_DIR", str(tmp_path_factory.mktemp("inventory-cache")))

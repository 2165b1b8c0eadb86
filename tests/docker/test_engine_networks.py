"""The suite's own way out of the engine's endpoint miscount (tests/support/docker.py) lets
nothing else through: a network that still has a container attached is never passed as kept."""

from __future__ import annotations

import uuid

import docker.errors
import pytest

from tests.support.docker import BASE_IMAGE, remove_network


def test_a_network_with_a_container_attached_is_refused_not_passed_as_kept(engine):
    network = engine.networks.create(f"jftest-{uuid.uuid4().hex[:10]}", driver="bridge")
    container = engine.containers.run(BASE_IMAGE, ["sleep", "600"], detach=True, network=network.name)
    try:
        with pytest.raises(docker.errors.APIError, match="active endpoints"):
            remove_network(network)
    finally:
        container.remove(force=True)
    assert remove_network(network) is True
    assert engine.networks.list(names=[network.name]) == []

"""The docker tier: a real Docker engine, real images and containers.

Every test owns what it creates: each daemon (or bare runtime) gets its own id, and at the end
every container, network and image labelled with that id is removed, even when the test failed.
The engine and the local base image come from `.ci/setup.d/20-docker.sh`; without an engine the
tier is skipped with the reason, never silently passed. `engine`, `wheelhouse` and the daemon
factory itself live in tests/support/plugin.py.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.support.daemons import Daemon


@pytest.fixture
def docker_daemon(daemon_factory):
    """Start real `jinad` daemons with the docker runtime; remove all they made afterwards."""

    def make(home: pathlib.Path | None = None) -> Daemon:
        return daemon_factory(runtime="docker", home=home)

    return make

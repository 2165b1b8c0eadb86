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

from tests.support.daemons import Daemon, reap
from tests.support.docker import purge
from tests.support.plugin import docker_env


@pytest.fixture
def docker_daemon(daemon_factory):
    """Start real `jinad` daemons with the docker runtime; remove all they made afterwards."""

    def make(home: pathlib.Path | None = None) -> Daemon:
        return daemon_factory(runtime="docker", home=home)

    return make


@pytest.fixture(scope="module")
def shared_docker_daemon(tmp_path_factory, engine, wheelhouse):
    """One docker-runtime daemon for a module's cases that each must leave nothing behind and
    check so (what one left fails the next); killed, reaped and purged like the factory's."""
    home = tmp_path_factory.mktemp("docker-daemon") / "jinad"
    home.mkdir()
    d = Daemon(home, extra=["--runtime", "docker"], env=docker_env(home, wheelhouse))
    try:
        yield d.start(timeout=60)
    finally:
        d.kill()
        reap(d.home)
        purge(engine, (home / "daemon-id").read_text().strip())

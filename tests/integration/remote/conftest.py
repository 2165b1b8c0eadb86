"""Real `jinad` daemons on loopback (own ports, own homes) for remote-Pod Flows."""

from __future__ import annotations

import os

import pytest

from tests.support.daemons import Daemon


@pytest.fixture
def daemons(daemon_factory, monkeypatch):
    """Daemons that share one token, handed to them and to the Flows in JINAD_TOKEN (as an operator
    of several local daemons would); ``make(token=...)`` gives one its own instead. The daemons
    themselves come from the shared factory (tests/support), process runtime."""
    shared = "remote-tests-" + os.urandom(8).hex()
    monkeypatch.setenv("JINAD_TOKEN", shared)

    def make(token: str | None = None) -> Daemon:
        return daemon_factory(token=token or shared)

    return make

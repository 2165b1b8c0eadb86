"""Real `jinad` daemons on loopback (own ports, own homes) for remote-Pod Flows."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "daemon"))
from jinad_testkit import Daemon, reap  # noqa: E402


@pytest.fixture
def daemons(tmp_path, monkeypatch):
    """Daemons that share one token, handed to them and to the Flows in JINAD_TOKEN (as an operator
    of several local daemons would); ``make(token=...)`` gives one its own instead."""
    shared = "remote-tests-" + os.urandom(8).hex()
    monkeypatch.setenv("JINAD_TOKEN", shared)
    made: list[Daemon] = []

    def make(token: str | None = None) -> Daemon:
        d = Daemon(tmp_path / f"host{len(made)}", token=token or shared)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()
    for d in made:
        reap(d.home)

"""Real `jinad` daemons on loopback (own ports, own homes) for remote-Pod Flows."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "daemon"))
from jinad_testkit import Daemon, reap  # noqa: E402


@pytest.fixture
def daemons(tmp_path):
    made: list[Daemon] = []

    def make(token: str | None = None) -> Daemon:
        d = Daemon(tmp_path / f"host{len(made)}", token=token)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()
    for d in made:
        reap(d.home)

"""A real `jinad` subprocess on a free loopback port with its own home, and everything it starts
cleaned up afterwards (even when the test fails)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # test files import jinad_testkit by name
from jinad_testkit import Daemon, reap  # noqa: E402


@pytest.fixture
def daemon_factory(tmp_path):
    made: list[Daemon] = []

    def make(token: str | None = None, extra: list[str] | None = None, home: pathlib.Path | None = None,
             **kw) -> Daemon:
        d = Daemon(home or tmp_path / f"home{len(made)}", token=token, extra=extra, **kw)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()
    for d in made:
        reap(d.home)


@pytest.fixture
def jinad(daemon_factory) -> Daemon:
    return daemon_factory()

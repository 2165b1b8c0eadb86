"""The daemon tier's `jinad`: one real daemon from the shared `daemon_factory` (tests/support)."""

from __future__ import annotations

import pytest

from tests.support.daemons import Daemon


@pytest.fixture
def jinad(daemon_factory) -> Daemon:
    return daemon_factory()

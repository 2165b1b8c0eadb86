"""The public API is exactly what jinad_fab/__init__.py exports (a change here is a release note)."""

import subprocess
import sys

import pytest

import jinad_fab

PUBLIC = {"AsyncClient", "Client", "Document", "DocumentArray", "Executor", "Flow", "requests"}


def test_public_names_are_pinned():
    assert set(jinad_fab.__all__) == PUBLIC | {"__version__"}
    for name in PUBLIC:
        assert getattr(jinad_fab, name).__module__.startswith("jinad_fab.")
        assert name in dir(jinad_fab)
    with pytest.raises(AttributeError):
        jinad_fab.NotAThing  # noqa: B018


def test_every_exported_member_is_documented():
    for name in PUBLIC:
        assert getattr(jinad_fab, name).__doc__, f"{name} has no docstring"


def test_importing_the_package_loads_nothing_heavy():
    """A Pea or the daemon importing `jinad_fab` must not drag in the Flow builder or httpx."""
    code = "import sys, jinad_fab.runtime.pea; print(sorted(m for m in sys.modules if m in " \
           "('jinad_fab.flow', 'jinad_fab.client', 'jinad_fab.remote', 'httpx', 'fastapi')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

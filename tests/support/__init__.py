"""Test support for every tier, loaded as a pytest plugin from ``tests/conftest.py``.

- `ports`: `free_port()`, the one way tests pick a loopback port.
- `daemons`: `Daemon` (one real `jinad` subprocess) and the helpers that clean up after it.
- `docker`: what a daemon left on a Docker engine, and how to remove it.
- `plugin`: the fixtures (`daemon_factory` for both runtimes, `engine`, `wheelhouse`, `wheels`).

Test modules import helpers as ``from tests.support.daemons import ...``: the repository root is on
``sys.path`` through pytest's own ``pythonpath`` setting (pyproject.toml), never by a test.
"""

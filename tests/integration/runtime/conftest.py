import os

import pytest

EXECS = os.path.join(os.path.dirname(__file__), "_execs.py")


@pytest.fixture
def execs():
    """`add(**execs('Stamp'))` runs an Executor from _execs.py in a real Pea."""

    def spec(name: str) -> dict:
        return {"uses": name, "py_modules": [EXECS]}

    return spec

"""The public API is exactly what jinad_fab/__init__.py exports (a change here is a release note)."""

import jinad_fab


def test_public_names_are_pinned():
    import types

    exported = {name for name in dir(jinad_fab)
                if not name.startswith("_") and not isinstance(getattr(jinad_fab, name), types.ModuleType)}
    assert exported == {"AsyncClient", "Client", "Document", "DocumentArray", "Executor", "Flow",
                                  "requests"}
    assert set(jinad_fab.__all__) == {"AsyncClient", "Client", "Document", "DocumentArray", "Executor", "Flow",
                                      "requests", "__version__"}


def test_every_exported_member_is_documented():
    for name in jinad_fab.__all__:
        if name.startswith("__"):
            continue
        assert getattr(jinad_fab, name).__doc__, f"{name} has no docstring"

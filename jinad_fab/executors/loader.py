"""Load Executors from a class, a built-in name, a `.yml` file, inline YAML or a dict. Safe YAML only.

YAML is read by :mod:`jinad_fab.safe_yaml` in its ``construct`` mode: ``!Name`` on a mapping reads
as ``{"jtype": "Name", ...}`` (the old executor form); every ``!!python/...`` tag is refused.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from collections.abc import Iterable
from typing import Any

from .. import safe_yaml
from ..errors import BadConfig, ExecutorNotFound
from . import builtins as _builtins
from .base import Executor, registered, registered_names

__all__ = ["load_executor", "import_py_modules", "executor_spec"]

_EXEC_KEYS = {"jtype", "with", "metas", "py_modules", "requests"}


def import_py_modules(paths: Iterable[str], base_dir: str | None = None) -> None:
    """Import user modules by file path so the Executors they define get registered."""
    for p in paths or ():
        path = p if os.path.isabs(p) or base_dir is None else os.path.join(base_dir, p)
        path = os.path.normpath(path)
        if not os.path.isfile(path):
            raise ExecutorNotFound(p, f"py_modules file {path!r} does not exist")
        name = "jinad_fab_user_" + os.path.splitext(os.path.basename(path))[0]
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ExecutorNotFound(p, "not an importable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        dirname = os.path.dirname(path)
        if dirname not in sys.path:
            sys.path.insert(0, dirname)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ExecutorNotFound(p, f"importing it raised {type(exc).__name__}: {exc}") from exc


def _class_for(name: str, uses: Any) -> type[Executor]:
    if name in _builtins.BUILTINS:
        if name == "_index":
            from . import index  # noqa: F401 - registers IndexExecutor
        name = _builtins.BUILTINS[name]
    cls = registered(name)
    if cls is None:
        close = difflib.get_close_matches(name, [*_builtins.BUILTINS, *registered_names()], n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ExecutorNotFound(uses, f"no Executor class named {name!r} ({hint}built-ins: "
                                     f"{', '.join(sorted(_builtins.BUILTINS))}; add py_modules to import yours)")
    return cls


def executor_spec(uses: Any, base_dir: str | None = None) -> tuple[dict, str | None]:
    """Normalise any `uses` form into ``{"jtype", "with", "metas", "py_modules"}`` and its base dir."""
    if isinstance(uses, type):
        if not issubclass(uses, Executor):
            raise ExecutorNotFound(uses, "a class given as `uses` must subclass Executor")
        return {"jtype": uses.__name__, "_class": uses}, base_dir
    if isinstance(uses, dict):
        spec = dict(uses)
    elif isinstance(uses, str):
        text = uses.strip()
        if not text:
            raise ExecutorNotFound(uses, "empty")
        if text.endswith((".yml", ".yaml")) and "\n" not in text:
            path = text if os.path.isabs(text) or base_dir is None else os.path.join(base_dir, text)
            if not os.path.isfile(path):
                raise ExecutorNotFound(uses, f"file {path!r} does not exist")
            spec = safe_yaml.load_file(path, what="Executor config")
            base_dir = os.path.dirname(os.path.abspath(path))
            if not isinstance(spec, dict):
                raise ExecutorNotFound(uses, "the YAML file must hold a mapping with `jtype:`")
        elif "\n" in text or text.startswith(("jtype:", "!")):
            spec = safe_yaml.loads(text, name="<inline uses>", what="inline Executor config")
            if not isinstance(spec, dict):
                raise ExecutorNotFound(uses, "inline YAML must be a mapping with `jtype:`")
        else:
            spec = {"jtype": text}
    else:
        raise ExecutorNotFound(uses, f"`uses` must be a class, name, path, YAML or dict, not {type(uses).__name__}")
    unknown = set(spec) - _EXEC_KEYS - {"_class"}
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(str(k), _EXEC_KEYS, n=1))
                             else "") for k in sorted(unknown, key=str)]
        raise BadConfig(f"unknown keys {', '.join(hints)} in Executor config (known: {sorted(_EXEC_KEYS)})")
    if "jtype" not in spec:
        raise ExecutorNotFound(uses, "the config has no `jtype:`")
    return spec, base_dir


def load_executor(uses: Any, *, uses_with: dict | None = None, uses_metas: dict | None = None,
                  py_modules: Iterable[str] = (), base_dir: str | None = None,
                  runtime_args: dict | None = None, uses_requests: dict | None = None) -> Executor:
    """Build an Executor instance from any supported `uses` form; ``uses_requests`` (over the YAML's
    ``requests:``) binds endpoints to its methods by name."""
    spec, spec_dir = executor_spec(uses, base_dir)
    metas = dict(spec.get("metas") or {})
    mods = list(spec.get("py_modules") or []) + list(metas.pop("py_modules", None) or [])
    import_py_modules(mods, spec_dir)
    import_py_modules(py_modules, base_dir)
    cls = spec.get("_class") or _class_for(str(spec["jtype"]), uses)
    metas.update(uses_metas or {})
    kwargs = dict(spec.get("with") or {})
    kwargs.update(uses_with or {})
    try:
        executor = cls(metas=metas, runtime_args=runtime_args, **kwargs)
    except TypeError as exc:
        raise BadConfig(f"cannot construct {cls.__name__} with {sorted(kwargs)}: {exc}") from exc
    for table in (spec.get("requests"), uses_requests):
        if table:
            executor.bind_requests(table)
    return executor

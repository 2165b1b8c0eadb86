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

__all__ = ["load_executor", "import_py_modules", "executor_spec", "confine", "OutsideWorkspace",
           "resolve_path", "check_paths"]

_EXEC_KEYS = {"jtype", "with", "metas", "py_modules", "requests"}


class OutsideWorkspace(BadConfig):
    """A path a config names resolves outside the workspace it runs in (400 at the daemon)."""

    def __init__(self, what: str, path: str):
        self.path = path
        super().__init__(f"{what} {path!r} is outside the workspace: only files inside it can be used")


CONFINE_ENV = "JINAD_FAB_CONFINE"
"""Set by ``jinad`` in the environment of every object it starts (``.``: the workspace, the
directory the object starts in); read on each use, so forked and spawned children inherit it."""

_ROOT: str | None = None  # set by confine()


def confine(root: str | os.PathLike | None) -> None:
    """From now on, in this process and the processes it starts, every file path the loader
    resolves (``uses`` YAML files, ``py_modules``, nested configs) must lie inside ``root`` after
    symlinks are followed; None lifts it."""
    global _ROOT
    _ROOT = os.path.realpath(root) if root is not None else None
    if _ROOT is None:
        os.environ.pop(CONFINE_ENV, None)
    else:
        os.environ[CONFINE_ENV] = _ROOT


def confinement() -> str | None:
    """The directory every loaded path must stay in, or None."""
    value = os.environ.get(CONFINE_ENV)
    if value and _ROOT is None:  # first use in this process: pin it (children inherit the absolute path)
        confine(value)
    elif value and _ROOT is not None and os.path.realpath(value) != _ROOT:
        # a child's environment may only narrow it, never widen it
        narrower = os.path.realpath(value)
        if narrower.startswith(_ROOT.rstrip(os.sep) + os.sep):
            confine(narrower)
        else:
            os.environ[CONFINE_ENV] = _ROOT
    return _ROOT


def resolve_path(path: str, base_dir: str | None, what: str, root: str | os.PathLike | None = None) -> str:
    """``path`` (relative to ``base_dir``) as an absolute path, refused with :class:`OutsideWorkspace`
    when it escapes ``root`` (default: the process's :func:`confine` root, if any)."""
    if not isinstance(path, str) or not path:
        raise BadConfig(f"{what} must be a file path, got {path!r}")
    full = os.path.normpath(path if os.path.isabs(path) or base_dir is None else os.path.join(base_dir, path))
    limit = os.path.realpath(root) if root is not None else confinement()
    if limit is not None:
        real = os.path.realpath(full)
        if real != limit and not real.startswith(limit.rstrip(os.sep) + os.sep):
            raise OutsideWorkspace(what, path)
    return full


def check_paths(uses: Any, *, py_modules: Iterable[str] = (), upload_files: Iterable[str] = (),
                base_dir: str | None, root: str | os.PathLike) -> None:
    """Resolve every path a Pod names (its ``uses`` and the YAML files and ``py_modules`` inside
    it, its own ``py_modules`` and ``upload_files``) inside ``root`` without importing anything;
    raises :class:`OutsideWorkspace` naming the first that escapes, ExecutorNotFound for a missing one."""
    spec, spec_dir = executor_spec(uses, base_dir, root=root)
    metas = spec.get("metas") or {}
    for mod in [*(spec.get("py_modules") or []), *((metas.get("py_modules") if isinstance(metas, dict) else None)
                                                    or [])]:
        _existing(resolve_path(mod, spec_dir, "py_modules", root), mod)
    for mod in py_modules or ():
        _existing(resolve_path(mod, base_dir, "py_modules", root), mod)
    for f in upload_files or ():
        resolve_path(f, base_dir, "upload_files", root)


def _existing(path: str, named: str) -> None:
    if not os.path.isfile(path):
        raise ExecutorNotFound(named, f"py_modules file {named!r} does not exist")


def import_py_modules(paths: Iterable[str], base_dir: str | None = None) -> None:
    """Import user modules by file path so the Executors they define get registered."""
    for p in paths or ():
        path = resolve_path(p, base_dir, "py_modules")
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


def executor_spec(uses: Any, base_dir: str | None = None, *,
                  root: str | os.PathLike | None = None) -> tuple[dict, str | None]:
    """Normalise any `uses` form into ``{"jtype", "with", "metas", "py_modules"}`` and its base dir.
    A YAML file is resolved inside ``root`` (or the :func:`confine` root) before it is read."""
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
            path = resolve_path(text, base_dir, "uses", root)
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
    if (runtime_args or {}).get("dump_path") is not None and not getattr(cls, "loads_dumps", False):
        raise BadConfig(f"dump_path: {cls.__name__} does not load dumps (the option is _index's)")
    try:
        executor = cls(metas=metas, runtime_args=runtime_args, **kwargs)
    except TypeError as exc:
        raise BadConfig(f"cannot construct {cls.__name__} with {sorted(kwargs)}: {exc}") from exc
    for table in (spec.get("requests"), uses_requests):
        if table:
            executor.bind_requests(table)
    return executor


confinement()  # pin an inherited "." to the directory this process started in

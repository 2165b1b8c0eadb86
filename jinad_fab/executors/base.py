"""Executor: user logic whose methods are bound to endpoints with ``@requests``."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import BadConfig

__all__ = ["Executor", "requests", "registered", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "*"
_REGISTRY: dict[str, type[Executor]] = {}
_ARG_NAMES = ("docs", "parameters", "endpoint", "header")


def requests(func: Callable | None = None, *, on: str | list[str] | None = None, idempotent: bool = False):
    """Bind a method to endpoints: ``@requests`` (the default handler) or ``@requests(on='/index')``.

    ``idempotent=True`` says running the method twice on one request does no harm: when the replica
    holding such a request dies, the Gateway sends it again to a surviving one (as it does for
    ``/search``) instead of failing it with PodDied.
    """

    def mark(fn: Callable) -> Callable:
        targets = [on] if isinstance(on, str) else list(on or [DEFAULT_ENDPOINT])
        for t in targets:
            if not isinstance(t, str) or not t:
                raise BadConfig(f"@requests(on=...) takes endpoint names, got {t!r}")
        fn._jf_endpoints = [_endpoint(t) for t in targets]
        fn._jf_idempotent = bool(idempotent)
        return fn

    if func is not None and callable(func):
        return mark(func)
    return mark


def _endpoint(name: str) -> str:
    return name if name == DEFAULT_ENDPOINT or name.startswith("/") else "/" + name


def registered(name: str) -> type[Executor] | None:
    """The Executor subclass registered under a class name, if any."""
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    """The class names of every Executor imported so far."""
    return sorted(_REGISTRY)


class Executor:
    """Base class of all Executors.

    Subclasses are registered by class name (so YAML ``jtype: MyExecutor`` finds them) and their
    ``@requests`` methods form an endpoint table. Handlers are called with the keyword arguments
    they declare among ``docs``, ``parameters``, ``endpoint`` and ``header``; a handler that returns
    a DocumentArray replaces the request's Documents, one that returns None edits them in place.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls
        table: dict[str, str] = {}
        idempotent: dict[str, bool] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for ep in getattr(value, "_jf_endpoints", ()):
                    table[ep] = attr
                    idempotent[ep] = bool(getattr(value, "_jf_idempotent", False))
        cls._jf_table = table
        cls._jf_idempotent = {ep for ep, yes in idempotent.items() if yes}

    _jf_table: dict[str, str] = {}
    _jf_idempotent: set[str] = set()

    def __init__(self, metas: dict | None = None, runtime_args: dict | None = None, **kwargs: Any):
        if kwargs:
            raise BadConfig(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)} "
                            f"(check `with:` / uses_with)")
        self.metas = dict(metas or {})
        self.metas.setdefault("name", type(self).__name__)
        self.runtime_args = dict(runtime_args or {})
        self.logger = logging.getLogger(f"jinad_fab.executor.{self.metas['name']}")
        self._handlers: dict[str, tuple[Callable, tuple[str, ...]]] = {}

    @property
    def workspace(self) -> str:
        """A directory this Executor may persist to (created on first use), one per shard."""
        base = self.metas.get("workspace") or os.path.join(os.getcwd(), "workspace")
        shard = self.runtime_args.get("shard_id")
        path = os.path.join(base, self.metas["name"] + (f"-shard{shard}" if shard is not None else ""))
        os.makedirs(path, exist_ok=True)
        return path

    def handler_for(self, endpoint: str) -> tuple[Callable, tuple[str, ...]] | None:
        """The bound method for an endpoint (or the default one) and the argument names it takes."""
        cached = self._handlers.get(endpoint)
        if cached is not None or endpoint in self._handlers:
            return cached
        attr = self._jf_table.get(endpoint) or self._jf_table.get(DEFAULT_ENDPOINT)
        found = None
        if attr is not None:
            fn = getattr(self, attr)
            params = inspect.signature(fn).parameters
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                names = _ARG_NAMES
            else:
                names = tuple(n for n in _ARG_NAMES if n in params)
            found = (fn, names)
        self._handlers[endpoint] = found
        return found

    @property
    def handles_requests(self) -> bool:
        """Whether any endpoint is bound to a method: a Pea hosting an Executor bound to none (`_pass`)
        forwards every request without asking for a handler."""
        return any(self._jf_table.values()) or type(self).handler_for is not Executor.handler_for

    def bind_requests(self, table: Mapping[str, str]) -> None:
        """Bind endpoints to methods by name, over the class's ``@requests`` (the Pod option
        ``uses_requests``, or ``requests:`` in the Executor's YAML): ``{'/search': 'encode'}``."""
        if not isinstance(table, Mapping):
            raise BadConfig(f"{type(self).__name__}: requests must map endpoints to method names, got {table!r}")
        bound = dict(self._jf_table)
        for endpoint, attr in table.items():
            if not isinstance(endpoint, str) or not endpoint:
                raise BadConfig(f"{type(self).__name__}: requests takes endpoint names, got {endpoint!r}")
            method = getattr(self, attr, None) if isinstance(attr, str) and not attr.startswith("_") else None
            if not callable(method):
                known = sorted({a for a in dir(type(self)) if not a.startswith("_")
                                and callable(getattr(type(self), a, None))} - set(dir(Executor)))
                raise BadConfig(f"{type(self).__name__}: requests {endpoint!r} -> {attr!r}: no such method "
                                f"(its methods: {', '.join(known) or 'none'})")
            bound[_endpoint(endpoint)] = attr
        self._jf_table = bound
        self._handlers.clear()

    @property
    def idempotent_endpoints(self) -> list[str]:
        """Endpoints whose handler is marked ``@requests(..., idempotent=True)`` (safe to run again)."""
        return sorted(ep for ep in self._jf_idempotent if self._jf_table.get(ep) is not None)

    @property
    def endpoints(self) -> list[str]:
        return sorted(self._jf_table)

    def close(self) -> None:
        """Called once when the Pea shuts down cleanly: persist state here."""

"""The one way this package reads and writes YAML: a safe loader, local tags registered explicitly.

Three modes, one per reader's need, each a ``yaml.SafeLoader`` subclass with exactly one
constructor for local tags (``!Name``); every other tag, ``!!python/...`` above all, stays unknown
to the safe loader and is refused:

``construct``  Flow and Executor files as this package runs them: ``!Flow {...}`` becomes the
               mapping plus ``"__kind__": "Flow"``; ``!Name {...}`` (the old Executor form) becomes
               ``{"jtype": "Name", ...}``; a local tag on anything but a mapping is an error.
``check``      a file someone else will run (the daemon checking an upload): local tags are
               accepted and dropped, the data under them kept as plain data.
``keep``       a file to write back out (rendering Flow YAML for an inventory): a local tag
               becomes :class:`Tagged`, and :func:`dumps` writes it again as it was.

Errors are :class:`~jinad_fab.errors.BadConfig` naming the file (or what the text is) with line
and column, never ``<unicode string>``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Literal

import yaml

from .errors import BadConfig

__all__ = ["Mode", "Tagged", "loads", "load_file", "dumps"]

Mode = Literal["construct", "check", "keep"]


@dataclasses.dataclass
class Tagged:
    """A YAML node with a local tag (``!Flow``), kept so the YAML written back has it too."""

    tag: str
    value: Any


def _plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, f"tag !{suffix} must tag a mapping", node.start_mark)
    data = loader.construct_mapping(node, deep=True)
    if suffix == "Flow":
        data["__kind__"] = "Flow"
        return data
    return {"jtype": suffix, **data}


def _check(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    return _plain(loader, node)


def _keep(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    return Tagged("!" + suffix, _plain(loader, node))


class _ConstructLoader(yaml.SafeLoader):
    pass


class _CheckLoader(yaml.SafeLoader):
    pass


class _KeepLoader(yaml.SafeLoader):
    pass


_ConstructLoader.add_multi_constructor("!", _construct)
_CheckLoader.add_multi_constructor("!", _check)
_KeepLoader.add_multi_constructor("!", _keep)

_LOADERS: dict[str, type[yaml.SafeLoader]] = {"construct": _ConstructLoader, "check": _CheckLoader,
                                               "keep": _KeepLoader}


def loads(text: str, *, mode: Mode = "construct", name: str = "<string>", what: str = "YAML") -> Any:
    """Parse YAML text. ``name`` is where it comes from (a file's path), printed with the line and
    column of a problem; ``what`` says what it is ("Flow file", "inline Executor config")."""
    try:
        loader = _LOADERS[mode](text)
    except KeyError:
        raise ValueError(f"mode must be one of {sorted(_LOADERS)}, not {mode!r}") from None
    loader.name = name  # what the error marks print instead of "<unicode string>"
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise BadConfig(f"invalid {what}: {exc}") from exc
    finally:
        loader.dispose()


def load_file(path: str | os.PathLike[str], *, mode: Mode = "construct", what: str = "YAML file",
              name: str | None = None) -> Any:
    """Read and parse a UTF-8 YAML file; errors name it (``name``, default: the path)."""
    shown = name or os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise BadConfig(f"invalid {what}: {shown} is not UTF-8 text") from exc
    except OSError as exc:
        raise BadConfig(f"invalid {what}: cannot read {shown}: {exc.strerror or exc}") from exc
    return loads(text, mode=mode, name=shown, what=what)


class _Dumper(yaml.SafeDumper):
    pass


def _represent_tagged(dumper: _Dumper, data: Tagged) -> yaml.Node:
    if isinstance(data.value, Mapping):
        return dumper.represent_mapping(data.tag, data.value)
    if isinstance(data.value, list):
        return dumper.represent_sequence(data.tag, data.value)
    return dumper.represent_scalar(data.tag, str(data.value))


_Dumper.add_representer(Tagged, _represent_tagged)


def dumps(data: Any) -> str:
    """YAML text for plain data and :class:`Tagged` nodes, keys in their given order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)

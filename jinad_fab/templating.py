"""The one home of Jinja2 and of the files jinad-fab ships (templates, playbooks, roles, inventories).

Assets live top-level in the repository and ship as package data under ``jinad_fab/assets/``
(symlinks in a checkout, real files in a wheel); :func:`asset` finds them with
:mod:`importlib.resources`, so an installed jinad-fab reads exactly what a checkout reads.

Every template renders in the same sandbox recipe (:func:`sandbox`): Jinja2's immutable sandbox
with ``StrictUndefined`` - a template reads only the variables it is given, a missing one is an
error (never an empty string), and user data is always a variable, never template source.
Text templates (Dockerfile, Flow YAML, the jinad unit) share :func:`environment`, configured like
Ansible's ``template`` module (``trim_blocks``, no autoescape) so `jinad-fab render unit` prints
what the role installs; HTML (the hello report) gets ``sandbox(html=True)``: autoescape on.

Neutral module: the daemon (workspace images), deploy (Flow YAML, units, playbooks) and hello
(the report) all use it, so it imports only ``jinja2`` and ``errors``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jinja2
import jinja2.sandbox

from .errors import BadConfig, BadInput

DEFAULT_BASE_IMAGE = "python:{python}-slim"
CONTAINER_UID = 10001
"""The non-root user workspace images run as."""

_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


# ---- shipped files -----------------------------------------------------------------------------


class AssetNotFound(BadInput, LookupError):
    """A template, playbook, role or inventory that this jinad-fab does not ship."""

    kind = "file"

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"{self.kind} {name!r} is not shipped with this jinad-fab")


class TemplateNotFound(AssetNotFound):
    kind = "template"


def _safe_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    for part in parts:
        if not part or part in (".", "..") or "\\" in part or part.startswith("/"):
            raise AssetNotFound("/".join(parts))
    return parts


def asset(*parts: str) -> Any:
    """The shipped file or folder at ``parts`` (a Traversable), e.g. ``asset("roles", "jinad")``."""
    return importlib.resources.files("jinad_fab").joinpath("assets", *_safe_parts(parts))


def asset_exists(*parts: str) -> bool:
    node = asset(*parts)
    return node.is_file() or node.is_dir()


def read_asset(*parts: str) -> str:
    node = asset(*parts)
    if not node.is_file():
        raise AssetNotFound("/".join(parts))
    return node.read_text(encoding="utf-8")


@contextlib.contextmanager
def assets_dir() -> Iterator[pathlib.Path]:
    """A real directory holding every asset, for tools that need paths (ansible-playbook).

    Installed from a wheel or a checkout this is the package's own folder; from a zip import
    the assets are copied to a temporary folder that is removed afterwards.
    """
    root = importlib.resources.files("jinad_fab").joinpath("assets")
    if isinstance(root, pathlib.Path):
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="jinad-fab-assets-") as tmp:
        _copy_tree(root, pathlib.Path(tmp))
        yield pathlib.Path(tmp)


def _copy_tree(node: Any, dest: pathlib.Path) -> None:
    for child in node.iterdir():
        target = dest / child.name
        if child.is_dir():
            target.mkdir()
            _copy_tree(child, target)
        else:
            with child.open("rb") as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


def template_source(name: str) -> str:
    """The text of a shipped template: ``Dockerfile.j2`` (from ``templates/``) or a path inside the
    assets such as ``roles/jinad/templates/jinad.service.j2``."""
    parts = tuple(name.split("/")) if "/" in name else ("templates", name)
    try:
        return read_asset(*parts)
    except AssetNotFound:
        raise TemplateNotFound(name) from None


# ---- the sandbox -------------------------------------------------------------------------------


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=indent is not None, default=str)


def sandbox(*, html: bool = False, loader: jinja2.BaseLoader | None = None,
            filters: Mapping[str, Callable[..., Any]] | None = None) -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    """A new environment made the one way jinad-fab makes them: immutable sandbox, StrictUndefined,
    autoescape exactly when the output is HTML."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=not html,
    )
    env.filters.update(to_json=_to_json, to_nice_json=lambda v: _to_json(v, indent=4), **dict(filters or {}))
    return env


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    """The shared environment over the shipped text templates."""
    return sandbox(loader=jinja2.FunctionLoader(lambda name: (template_source(name), None, lambda: True)))


def _render(template: Callable[[], jinja2.Template], context: Mapping[str, Any], what: str) -> str:
    try:
        return template().render(**context)
    except jinja2.UndefinedError as exc:
        raise BadConfig(f"{what}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateNotFound(exc.name or what) from exc
    except jinja2.TemplateError as exc:
        raise BadConfig(f"{what}: {exc}") from exc


def render(name: str, **variables: Any) -> str:
    """Render a shipped template; a variable it needs but did not get is :class:`BadConfig`."""
    return _render(lambda: environment().get_template(name), variables, f"template {name}")


def render_string(source: str, context: Mapping[str, Any], what: str = "template") -> str:
    """Render user-given template source (a Flow file that is a template) in the same sandbox."""
    return _render(lambda: environment().from_string(source), context, what)


def render_dockerfile(
    config: Any,
    *,
    version: str,
    base_image: str | None = None,
    has_requirements: bool = False,
    wheelhouse: bool = True,
) -> str:
    """The Dockerfile of a workspace image, exactly as the daemon builds it.

    ``config`` is a :class:`jinad_fab.jinadfile.JinadConfig`. ``base_image`` defaults to
    ``python:<config.python>-slim``; it must have ``python3`` with ``venv`` and ``useradd``.
    """
    image = base_image or DEFAULT_BASE_IMAGE.format(python=config.python)
    if not _IMAGE_REF.match(image):
        raise BadConfig(f"not an image reference: {image!r}")
    return render(
        "Dockerfile.j2",
        base_image=image,
        version=version,
        uid=CONTAINER_UID,
        wheelhouse=wheelhouse,
        requirements=has_requirements,
        ports=list(config.ports),
        run=list(config.run),
    )

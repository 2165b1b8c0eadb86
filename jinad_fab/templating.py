"""Render the shipped Jinja2 templates (``templates/*.j2``) safely.

One sandboxed environment with ``StrictUndefined``: a template can only read the variables it
is given, a missing one is an error rather than an empty string, and user data is always a
variable, never template source. Autoescape is off because nothing rendered here is HTML.

Neutral module: the daemon (workspace images) and the CLI/deploy side (review, unit files)
both render through it, so it imports only ``jinja2`` and ``errors``.
"""

from __future__ import annotations

import functools
import importlib.resources
import pathlib
import re
from typing import Any

import jinja2
import jinja2.sandbox

from .errors import BadConfig, JinadFabError

DEFAULT_BASE_IMAGE = "python:{python}-slim"
CONTAINER_UID = 10001
"""The non-root user workspace images run as."""

_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


class TemplateNotFound(JinadFabError, LookupError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"template {name!r} is not shipped with this jinad-fab")


def template_source(name: str) -> str:
    """The text of a shipped template: package data in a wheel, ``templates/`` in a checkout."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise TemplateNotFound(name)
    shipped = importlib.resources.files("jinad_fab") / "assets" / "templates" / name
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    checkout = pathlib.Path(__file__).resolve().parent.parent / "templates" / name
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise TemplateNotFound(name)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def _load(name: str) -> tuple[str, None, Any]:
    return template_source(name), None, None


def render(name: str, **variables: Any) -> str:
    """Render a shipped template; a variable it needs but did not get is :class:`BadConfig`."""
    try:
        return environment().get_template(name).render(**variables)
    except jinja2.UndefinedError as exc:
        raise BadConfig(f"template {name}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateNotFound(name) from exc


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

"""``hello-world.html``: the images demo's report, rendered by Jinja2 with autoescaping on.

Everything is inlined (digits as ``data:`` PNGs, the Flow graph as a ``data:`` SVG image), so the
one file can be mailed or opened from anywhere. The template ships as package data.
"""

from __future__ import annotations

import base64
import importlib.resources
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import jinja2.sandbox

REPORT_NAME = "hello-world.html"


def _template() -> jinja2.Template:
    text = importlib.resources.files("jinad_fab").joinpath("assets", "hello", "report.html.j2").read_text("utf-8")
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def render_report(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], flow_svg: str | None,
                  flow_svg_error: str = "") -> str:
    """HTML for a run. `rows`: one per query, ``{"id", "label", "uri", "matches": [{"id", "uri",
    "score", "hit"}]}``; `summary`: what ``--json`` prints."""
    uri = None
    if flow_svg:
        uri = "data:image/svg+xml;base64," + base64.b64encode(flow_svg.encode("utf-8")).decode("ascii")
    names = [n for n in ("precision@1", f"precision@{summary['top_k']}", f"recall@{summary['top_k']}")
             if n in summary["metrics"]]
    return _template().render(summary=summary, rows=rows, metric_names=names, flow_svg_uri=uri,
                              flow_svg_error=flow_svg_error)

"""``hello-world.html``: the images demo's report, rendered by Jinja2 with autoescaping on.

Everything is inlined (digits as ``data:`` PNGs, the Flow graph as a ``data:`` SVG image), so the
one file can be mailed or opened from anywhere. The template ships as package data. The page opens
with one paragraph that says what was searched and what the numbers mean, then the queries that
went wrong, then the rest, in a grid that fills the window's width.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from ..templating import read_asset, sandbox

REPORT_NAME = "hello-world.html"


def _template() -> jinja2.Template:
    return sandbox(html=True).from_string(read_asset("hello", "report.html.j2"))


def headline(summary: Mapping[str, Any]) -> list[str]:
    """The report's opening sentences (the CLI prints them too): what was searched, how well, and
    what each number means, including the ceiling that caps recall on this data."""
    k, m, base = summary["top_k"], summary["metrics"], summary["baseline"]
    n = summary["queries"]
    out = [f"Searched {n:,} held-out handwritten digits against {summary['index_size']:,} indexed ones, "
           f"{k} matches each, through a real Flow.",
           f"precision@1 {m['precision@1']:.3f}: the closest match had the query's label for "
           f"{round(m['precision@1'] * n):,} of {n:,} queries (a random ranking: {base['precision@1']:.3f})."]
    if k > 1:
        out.append(f"precision@{k} {m[f'precision@{k}']:.3f}: the share of all {k} matches with the right label "
                   f"(random: {base[f'precision@{k}']:.3f}).")
    ceiling = summary.get("recall_ceiling")
    if ceiling is not None:
        per_label = round(summary["index_size"] / 10)
        out.append(f"recall@{k} {m[f'recall@{k}']:.3f} of a possible {ceiling:.3f}: about {per_label} indexed digits "
                   f"share each label, so {k} matches can find at most that share of them; the ceiling, "
                   "not the search, keeps recall low here.")
    misses = summary.get("queries_with_misses")
    if misses is not None:
        out.append(f"{misses:,} of {n:,} queries have at least one match with another label; they come first in the report."
                   if misses else "Every match of every query has the query's label.")
    return out


def order_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Misses first: the queries with the most wrong matches (a wrong first match counts most),
    then the rest in their original order."""
    def key(item: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
        i, row = item
        wrong = sum(1 for m in row["matches"] if not m["hit"])
        first_wrong = bool(row["matches"]) and not row["matches"][0]["hit"]
        return (-int(first_wrong), -wrong, i)

    return [row for _, row in sorted(enumerate(rows), key=key)]


def render_report(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], flow_svg: str | None,
                  flow_svg_error: str = "") -> str:
    """HTML for a run. `rows`: one per query, ``{"id", "label", "uri", "matches": [{"id", "uri",
    "score", "hit"}]}``; `summary`: what ``--json`` prints."""
    uri = None
    if flow_svg:
        uri = "data:image/svg+xml;base64," + base64.b64encode(flow_svg.encode("utf-8")).decode("ascii")
    names = [n for n in ("precision@1", f"precision@{summary['top_k']}", f"recall@{summary['top_k']}")
             if n in summary["metrics"]]
    return _template().render(summary=summary, rows=order_rows(rows), metric_names=names, flow_svg_uri=uri,
                              flow_svg_error=flow_svg_error, headline=headline(summary))

"""A Document's tree: the Document, its chunks (solid edges) and matches (dashed, with their scores),
recursively. Reads only the public Document API."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .graph import Graph
from .render import render_svg

if TYPE_CHECKING:
    from ..document import Document

__all__ = ["document_graph", "document_svg", "MAX_NODES"]

MAX_NODES = 500


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _fmt(v: object) -> str:
    try:
        return f"{float(v):.4g}"  # plain floats, and score objects that convert to float
    except (TypeError, ValueError):
        return str(v)


def _lines(doc: Document) -> list[str]:
    lines = [f"id: {_short(doc.id, 36)}"]
    if doc.text is not None:
        lines.append(f"text: {_short(doc.text)!r}")
    if doc.uri is not None:
        lines.append(f"uri: {_short(doc.uri)}")
    if doc.mime_type is not None:
        lines.append(f"mime_type: {doc.mime_type}")
    if doc.buffer is not None:
        lines.append(f"buffer: {len(doc.buffer)} bytes")
    for name in ("blob", "embedding"):
        arr = getattr(doc, name)
        if arr is not None:
            lines.append(f"{name}: {arr.dtype}{list(arr.shape)}")
    if doc.has("tags"):
        items = list(doc.tags.items())
        lines.extend(f"tags.{k}: {_short(repr(v), 30)}" for k, v in items[:5])
        if len(items) > 5:
            lines.append(f"(+{len(items) - 5} more tags)")
    if doc.has("scores"):
        lines.extend(f"score {k}: {_fmt(v)}" for k, v in doc.scores.items())
    return lines


def document_graph(doc: Document, max_nodes: int = MAX_NODES) -> Graph:
    g = Graph("document", direction="TB")
    counter = [0]

    def add(d: Document, depth: int) -> str:
        node = f"d{counter[0]}"
        counter[0] += 1
        g.node(node, *_lines(d), fill="#eef4fb" if depth % 2 == 0 else "#f6f6f6")
        for kind, children in (("chunk", d.chunks if d.has("chunks") else ()),
                               ("match", d.matches if d.has("matches") else ())):
            for child in children:
                if counter[0] >= max_nodes:
                    if "more" not in g.nodes:
                        g.node("more", "…(truncated)", shape="plaintext")
                    g.edge(node, "more")
                    return node
                child_node = add(child, depth + 1)
                if kind == "match":
                    scores = ", ".join(f"{k}={_fmt(v)}" for k, v in child.scores.items()) if child.has("scores") else ""
                    g.edge(node, child_node, "match", scores, style="dashed", color="#c0504d")
                else:
                    g.edge(node, child_node, "chunk")
        return node

    add(doc, 0)
    return g


def document_svg(doc: Document, path: str | os.PathLike | None = None, engine: str = "auto") -> str:
    """Draw a Document and its nested chunks and matches as SVG (see :func:`jinad_fab.viz.render_svg`)."""
    return render_svg(document_graph(doc), path, engine)

"""SVG drawings with Graphviz: a Document with its nested chunks and matches (and the shared renderer
that :mod:`jinad_fab.flow.plot` uses for Flows).

Needs the ``graphviz`` Python package and Graphviz's ``dot`` program (Debian: ``apt-get install
graphviz``); when either is missing the error says so.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import JinadFabError

if TYPE_CHECKING:
    from .document import Document

__all__ = ["document_svg", "render_svg", "label", "load_graphviz"]

_MAX_NODES = 500


def load_graphviz() -> Any:
    try:
        import graphviz
    except ImportError as exc:
        raise JinadFabError("plotting needs the `graphviz` package: pip install 'jinad-fab[hello]'") from exc
    return graphviz


def label(*lines: str) -> str:
    """A node label of several lines, each escaped so user text is drawn as written."""
    gv = load_graphviz()
    return "\\n".join(str(gv.escape(line)) for line in lines if line)


def render_svg(graph: Any, path: str | os.PathLike | None = None) -> str:
    """Run `dot` on a graphviz graph; write the SVG to `path` if given and return its text."""
    gv = load_graphviz()
    try:
        svg = graph.pipe(format="svg", encoding="utf-8")
    except gv.ExecutableNotFound as exc:
        raise JinadFabError("plotting needs Graphviz's `dot` program on PATH (Debian: apt-get install graphviz)"
                            ) from exc
    except gv.CalledProcessError as exc:
        raise JinadFabError(f"Graphviz failed to draw the graph: {exc.stderr or exc}") from exc
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(svg)
    return svg


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _doc_label(doc: Document) -> str:
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
        lines.extend(f"score {k}: {v:.4g}" for k, v in doc.scores.items())
    return label(*lines)


def document_svg(doc: Document, path: str | os.PathLike | None = None) -> str:
    """Draw a Document and, recursively, its chunks (solid edges) and matches (dashed, with scores)."""
    gv = load_graphviz()
    g = gv.Digraph("document", graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                   node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "#eef4fb",
                              "fontname": "Helvetica", "fontsize": "10"},
                   edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    counter = [0]

    def add(d: Document, depth: int) -> str:
        node = f"d{counter[0]}"
        counter[0] += 1
        fill = "#eef4fb" if depth == 0 else ("#f6f6f6" if depth % 2 else "#eef4fb")
        g.node(node, _doc_label(d), fillcolor=fill)
        for kind, children in (("chunk", d._chunks), ("match", d._matches)):
            for child in children or ():
                if counter[0] >= _MAX_NODES:
                    g.node("more", "…(truncated)", shape="plaintext")
                    g.edge(node, "more")
                    return node
                child_node = add(child, depth + 1)
                if kind == "match":
                    scores = ", ".join(f"{k}={v:.3g}" for k, v in (child._scores or {}).items())
                    g.edge(node, child_node, label=label("match", scores), style="dashed", color="#c0504d")
                else:
                    g.edge(node, child_node, label="chunk")
        return node

    add(doc, 0)
    return render_svg(g, path)

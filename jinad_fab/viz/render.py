"""One entry point for every drawing: Graphviz's ``dot`` when it is installed, else the built-in layout."""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import BadInput, JinadFabError
from .graph import Graph
from .layout import layout_svg

ENGINES = ("auto", "dot", "python")
_DOT_TIMEOUT = 60.0


def _q(text: str) -> str:
    """A DOT double-quoted string: user text is drawn as written (no DOT escapes such as ``\\l``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(lines: tuple[str, ...]) -> str:
    return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines) + '"'


def to_dot(graph: Graph) -> str:
    """The graph in the DOT language (what ``dot`` reads)."""
    out = [f"digraph {_q(graph.name)} {{",
           f'  graph [rankdir={graph.direction} fontname="Helvetica" compound=true];',
           '  node [shape=box style="rounded,filled" fontname="Helvetica" fontsize=10];',
           '  edge [fontname="Helvetica" fontsize=9];']

    def node_line(n) -> str:
        return f"{_q(n.id)} [label={_label(n.lines)} shape={n.shape} fillcolor={_q(n.fill)}];"

    for cid, c in graph.clusters.items():
        out.append(f"  subgraph {_q('cluster_' + cid)} {{")
        out.append(f'    graph [label={_label(c.lines)} style="rounded,dashed" color="#7f9fbf" fontsize=10];')
        out.extend("    " + node_line(n) for n in graph.nodes.values() if n.cluster == cid)
        out.append("  }")
    out.extend("  " + node_line(n) for n in graph.nodes.values() if n.cluster is None)
    for e in graph.edges:
        attrs = [f"style={e.style}", f"color={_q(e.color)}"]
        if e.lines:
            attrs.insert(0, f"label={_label(e.lines)}")
        out.append(f"  {_q(e.src)} -> {_q(e.dst)} [{' '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_svg(graph: Graph, dot: str) -> str:
    try:
        done = subprocess.run([dot, "-Tsvg"], input=to_dot(graph), capture_output=True, text=True,
                              timeout=_DOT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JinadFabError(f"Graphviz's dot could not draw the graph: {exc}") from exc
    if done.returncode != 0:
        raise JinadFabError(f"Graphviz's dot failed to draw the graph: {done.stderr.strip()}")
    return done.stdout


def render_svg(graph: Graph, path: str | os.PathLike | None = None, engine: str = "auto") -> str:
    """Lay the graph out and return the SVG text (also written to `path` if given).

    `engine`: ``dot`` (Graphviz's program; an error when it is not on PATH), ``python`` (the
    built-in layered layout, no system binary), or ``auto``: ``dot`` when it is there, else ``python``.
    """
    if engine not in ENGINES:
        raise BadInput(f"unknown drawing engine {engine!r}; one of {', '.join(ENGINES)}")
    dot = shutil.which("dot") if engine in ("auto", "dot") else None
    if engine == "dot" and dot is None:
        raise JinadFabError("the `dot` engine needs Graphviz on PATH (Debian: apt-get install graphviz); "
                            "engine='python' draws without it")
    svg = _dot_svg(graph, dot) if dot else layout_svg(graph)
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(svg)
    return svg

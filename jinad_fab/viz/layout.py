"""A layered ("Sugiyama-style") layout of a small directed graph, written out as SVG, in pure Python.

Graphviz's ``dot`` draws better, but is a system program a user may not have; this layout is what
every drawing falls back to. Steps, each the simple textbook version (the graphs drawn here are a
Flow's Pods or a Document's chunks: tens of nodes, rarely hundreds):

1. layers: the longest path from a source (edges that close a cycle are ignored for this);
2. order within a layer: a few sweeps of the barycentre heuristic, keeping a cluster's nodes together;
3. coordinates: layers side by side (``LR``) or stacked (``TB``), each centred on the widest;
4. edges as cubic curves between node borders, labels at their middle, clusters as dashed boxes.

Text widths are estimated (no font metrics without a renderer), generously, so labels fit.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from xml.sax.saxutils import escape, quoteattr

from .graph import Graph, Node

FONT = "Helvetica, Arial, sans-serif"
_CHAR_W, _LINE_H = 6.4, 13.0   # at font-size 10: an upper bound of Helvetica's average advance
_EDGE_CHAR_W, _EDGE_LINE_H = 5.8, 11.0
_PAD_X, _PAD_Y = 10.0, 7.0
_NODE_GAP, _CLUSTER_GAP, _MARGIN = 16.0, 26.0, 14.0
_SWEEPS = 4


@dataclasses.dataclass
class _Box:
    x: float  # centre
    y: float  # centre
    w: float
    h: float


def _text_size(lines: tuple[str, ...], char_w: float = _CHAR_W, line_h: float = _LINE_H) -> tuple[float, float]:
    return max((len(line) for line in lines), default=0) * char_w, len(lines) * line_h


def _node_size(n: Node) -> tuple[float, float]:
    tw, th = _text_size(n.lines)
    w, h = tw + 2 * _PAD_X, th + 2 * _PAD_Y
    if n.shape == "ellipse":
        w, h = w * 1.3, h * 1.25
    elif n.shape == "diamond":
        w, h = w * 1.6, h * 1.6
    return max(w, 40.0), max(h, 26.0)


def _layers(graph: Graph) -> dict[str, int]:
    """Longest path from the sources; an edge into a node already on the current path is a cycle and skipped."""
    preds: dict[str, list[str]] = defaultdict(list)
    for e in graph.edges:
        if e.src != e.dst:
            preds[e.dst].append(e.src)
    layer: dict[str, int] = {}
    on_path: set[str] = set()

    def visit(n: str) -> int:
        if n in layer:
            return layer[n]
        on_path.add(n)
        best = 0
        for p in preds[n]:
            if p not in on_path:
                best = max(best, visit(p) + 1)
        on_path.discard(n)
        layer[n] = best
        return best

    for n in graph.nodes:
        visit(n)
    return layer


def _order(graph: Graph, layer: dict[str, int]) -> list[list[str]]:
    """Nodes per layer, ordered to reduce crossings; a cluster's nodes stay next to each other."""
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in graph.nodes:  # insertion order is the first guess: callers add nodes in a sensible order
        rows[layer[n]].append(n)
    ups: dict[str, list[str]] = defaultdict(list)
    downs: dict[str, list[str]] = defaultdict(list)
    for e in graph.edges:
        if layer[e.src] < layer[e.dst]:
            downs[e.src].append(e.dst)
            ups[e.dst].append(e.src)

    def sort_row(row: list[str], neighbours: dict[str, list[str]], pos: dict[str, float]) -> list[str]:
        own = {n: i for i, n in enumerate(row)}
        bary = {n: (sum(pos[m] for m in neighbours[n]) / len(neighbours[n]) if neighbours[n] else own[n])
                for n in row}
        groups: dict[str, list[float]] = defaultdict(list)
        for n in row:
            groups[graph.nodes[n].cluster or f"\0{n}"].append(bary[n])
        key_of = {g: sum(v) / len(v) for g, v in groups.items()}

        def key(n: str) -> tuple[float, str, float, int]:
            g = graph.nodes[n].cluster or f"\0{n}"
            return key_of[g], g, bary[n], own[n]

        return sorted(row, key=key)

    for sweep in range(_SWEEPS):
        pos = {n: float(i) for row in rows for i, n in enumerate(row)}
        if sweep % 2 == 0:
            for i in range(1, len(rows)):
                rows[i] = sort_row(rows[i], ups, pos)
                pos.update({n: float(j) for j, n in enumerate(rows[i])})
        else:
            for i in range(len(rows) - 2, -1, -1):
                rows[i] = sort_row(rows[i], downs, pos)
                pos.update({n: float(j) for j, n in enumerate(rows[i])})
    return rows


def _place(graph: Graph, rows: list[list[str]], layer: dict[str, int]) -> dict[str, _Box]:
    lr = graph.direction == "LR"
    sizes = {n: _node_size(graph.nodes[n]) for n in graph.nodes}
    # the gap after each layer leaves room for the labels of the edges that leave it
    gap_after = [56.0] * len(rows)
    for e in graph.edges:
        if e.lines and layer[e.src] < layer[e.dst]:
            tw, th = _text_size(e.lines, _EDGE_CHAR_W, _EDGE_LINE_H)
            gap_after[layer[e.src]] = max(gap_after[layer[e.src]], (tw if lr else th) + 30.0)
    title_h = {cid: _text_size(c.lines)[1] + 10.0 for cid, c in graph.clusters.items()}
    title_w = {cid: _text_size(c.lines)[0] + 20.0 for cid, c in graph.clusters.items()}
    boxes: dict[str, _Box] = {}
    main = _MARGIN
    cross_extent: list[float] = []
    cluster_layers: dict[str, set[int]] = defaultdict(set)
    for n in graph.nodes.values():
        if n.cluster is not None:
            cluster_layers[n.cluster].add(layer[n.id])
    for i, row in enumerate(rows):
        if not lr:  # top to bottom: a cluster's frame and title need room above its first layer
            opening = {graph.nodes[n].cluster for n in row} - {None}
            main += max([0.0] + [title_h[c] + 10.0 for c in opening if min(cluster_layers[c]) == i])
        depth = max((sizes[n][0] if lr else sizes[n][1] for n in row), default=0.0)
        if lr:  # a cluster that lives in this layer alone gets room for its title's width
            own = {graph.nodes[n].cluster for n in row} - {None}
            depth = max([depth] + [title_w[c] - 20.0 for c in own if cluster_layers[c] == {i}])
        cross, prev_cluster = _MARGIN, None
        for j, n in enumerate(row):
            w, h = sizes[n]
            cluster = graph.nodes[n].cluster
            if j:
                cross += _CLUSTER_GAP if cluster != prev_cluster else _NODE_GAP
            if cluster is not None and cluster != prev_cluster:  # room for the cluster's frame and title
                cross += title_h[cluster] if lr else 10.0
            along = w if not lr else h
            boxes[n] = _Box(main + depth / 2 if lr else cross + along / 2, cross + along / 2 if lr else main + depth / 2, w, h)
            cross += along
            if cluster is not None and (j + 1 == len(row) or graph.nodes[row[j + 1]].cluster != cluster):
                cross += 10.0
            prev_cluster = cluster
        cross_extent.append(cross)
        main += depth + gap_after[i]
        if not lr:  # and room below its last one, for the frame
            closing = {graph.nodes[n].cluster for n in row} - {None}
            main += 10.0 if any(max(cluster_layers[c]) == i for c in closing) else 0.0
    widest = max(cross_extent, default=0.0)
    for row, extent in zip(rows, cross_extent):  # centre every layer on the widest one
        shift = (widest - extent) / 2
        for n in row:
            if lr:
                boxes[n].y += shift
            else:
                boxes[n].x += shift
    return boxes


def _border(b: _Box, lr: bool, out: bool) -> tuple[float, float]:
    sign = 1 if out else -1
    return (b.x + sign * b.w / 2, b.y) if lr else (b.x, b.y + sign * b.h / 2)


def _shape_svg(n: Node, b: _Box) -> str:
    x0, y0 = b.x - b.w / 2, b.y - b.h / 2
    fill, stroke = quoteattr(n.fill), '"#4d6f94"'
    if n.shape == "ellipse":
        return f'<ellipse cx="{b.x:.1f}" cy="{b.y:.1f}" rx="{b.w / 2:.1f}" ry="{b.h / 2:.1f}" fill={fill} stroke={stroke}/>'
    if n.shape == "diamond":
        pts = f"{b.x:.1f},{y0:.1f} {x0 + b.w:.1f},{b.y:.1f} {b.x:.1f},{y0 + b.h:.1f} {x0:.1f},{b.y:.1f}"
        return f'<polygon points="{pts}" fill={fill} stroke={stroke}/>'
    if n.shape == "plaintext":
        return ""
    return (f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="6" fill={fill} '
            f'stroke={stroke}/>')


def _text_svg(lines: tuple[str, ...], x: float, y: float, size: int, line_h: float, halo: bool = False) -> str:
    top = y - line_h * (len(lines) - 1) / 2
    extra = ' stroke="white" stroke-width="3" paint-order="stroke"' if halo else ""
    return "".join(f'<text x="{x:.1f}" y="{top + i * line_h:.1f}" text-anchor="middle" dominant-baseline="middle" '
                   f'font-size="{size}"{extra}>{escape(line)}</text>' for i, line in enumerate(lines))


def layout_svg(graph: Graph) -> str:
    """The graph laid out and drawn as a standalone SVG document."""
    lr = graph.direction == "LR"
    layer = _layers(graph)
    rows = _order(graph, layer)
    boxes = _place(graph, rows, layer)
    parts: list[str] = []
    titles: list[str] = []  # drawn over the edges, so an edge into a cluster never hides its title
    frames: dict[str, list[float]] = {}
    for cid, c in graph.clusters.items():
        members = [boxes[n.id] for n in graph.nodes.values() if n.cluster == cid]
        if not members:
            continue
        x0 = min(b.x - b.w / 2 for b in members) - 10
        x1 = max(b.x + b.w / 2 for b in members) + 10
        y1 = max(b.y + b.h / 2 for b in members) + 10
        th = _text_size(c.lines)[1] + 8
        y0 = min(b.y - b.h / 2 for b in members) - 10 - th
        spare = _text_size(c.lines)[0] + 20 - (x1 - x0)
        if spare > 0:  # widen the frame evenly to hold its title
            x0, x1 = x0 - spare / 2, x1 + spare / 2
        frames[cid] = [x0, y0, x1, y1]
        parts.append(f'<g class="cluster"><title>{escape(cid)}</title>'
                     f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" rx="8" '
                     f'fill="none" stroke="#7f9fbf" stroke-dasharray="5,3"/></g>')
        titles.append('<g class="cluster-title">'
                      + _text_svg(c.lines, (x0 + x1) / 2, y0 + th / 2 + 2, 10, _LINE_H, halo=True) + "</g>")
    for e in graph.edges:
        a, b = boxes[e.src], boxes[e.dst]
        if layer[e.src] < layer[e.dst]:
            (x0, y0), (x1, y1) = _border(a, lr, True), _border(b, lr, False)
            if lr:
                mx = (x0 + x1) / 2
                d = f"M{x0:.1f},{y0:.1f} C{mx:.1f},{y0:.1f} {mx:.1f},{y1:.1f} {x1:.1f},{y1:.1f}"
            else:
                my = (y0 + y1) / 2
                d = f"M{x0:.1f},{y0:.1f} C{x0:.1f},{my:.1f} {x1:.1f},{my:.1f} {x1:.1f},{y1:.1f}"
        else:  # an edge back up the layers (a cycle): straight, centre to centre
            x0, y0, x1, y1 = a.x, a.y, b.x, b.y
            d = f"M{x0:.1f},{y0:.1f} L{x1:.1f},{y1:.1f}"
        dash = {"dashed": ' stroke-dasharray="6,4"', "dotted": ' stroke-dasharray="2,3"'}.get(e.style, "")
        label = _text_svg(e.lines, (x0 + x1) / 2, (y0 + y1) / 2, 9, _EDGE_LINE_H, halo=True) if e.lines else ""
        parts.append(f'<g class="edge"><title>{escape(e.src)}-&gt;{escape(e.dst)}</title>'
                     f'<path d="{d}" fill="none" stroke={quoteattr(e.color)}{dash} marker-end="url(#arrow)"/>'
                     f"{label}</g>")
    parts.extend(titles)
    for n in graph.nodes.values():
        b = boxes[n.id]
        parts.append(f'<g class="node"><title>{escape(n.id)}</title>{_shape_svg(n, b)}'
                     + _text_svg(n.lines, b.x, b.y, 10, _LINE_H) + "</g>")
    left = min([b.x - b.w / 2 for b in boxes.values()] + [f[0] for f in frames.values()], default=0) - _MARGIN
    top = min([b.y - b.h / 2 for b in boxes.values()] + [f[1] for f in frames.values()], default=0) - _MARGIN
    right = max([b.x + b.w / 2 for b in boxes.values()] + [f[2] for f in frames.values()], default=0) + _MARGIN
    bottom = max([b.y + b.h / 2 for b in boxes.values()] + [f[3] for f in frames.values()], default=0) + _MARGIN
    left, top = min(left, 0.0), min(top, 0.0)  # a frame widened for its title may reach past the margin
    width, height = right - left, bottom - top
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<!-- drawn by jinad-fab's built-in layered layout (Graphviz's dot was not used) -->\n"
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}pt" height="{height:.0f}pt" '
            f'viewBox="{left:.1f} {top:.1f} {width:.1f} {height:.1f}" font-family={quoteattr(FONT)}>\n'
            f"<title>{escape(graph.name)}</title>\n"
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333333"/></marker></defs>\n'
            f'<rect x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" height="{height:.1f}" fill="white"/>\n'
            + "\n".join(parts) + "\n</svg>\n")

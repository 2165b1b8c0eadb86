"""The drawing model both layouts read: nodes with multi-line labels, edges, and clusters."""

from __future__ import annotations

import dataclasses

from ..errors import BadInput

SHAPES = ("box", "ellipse", "diamond", "plaintext")
EDGE_STYLES = ("solid", "dashed", "dotted")


@dataclasses.dataclass
class Node:
    id: str
    lines: tuple[str, ...]
    shape: str = "box"
    fill: str = "#eef4fb"
    cluster: str | None = None


@dataclasses.dataclass
class Edge:
    src: str
    dst: str
    lines: tuple[str, ...] = ()
    style: str = "solid"
    color: str = "#333333"


@dataclasses.dataclass
class Cluster:
    id: str
    lines: tuple[str, ...]


@dataclasses.dataclass
class Graph:
    """A directed graph to draw. `direction` is ``LR`` (left to right) or ``TB`` (top to bottom)."""

    name: str
    direction: str = "LR"
    nodes: dict[str, Node] = dataclasses.field(default_factory=dict)
    edges: list[Edge] = dataclasses.field(default_factory=list)
    clusters: dict[str, Cluster] = dataclasses.field(default_factory=dict)

    def node(self, id: str, *lines: str, shape: str = "box", fill: str = "#eef4fb",
             cluster: str | None = None) -> Node:
        if shape not in SHAPES:
            raise BadInput(f"unknown node shape {shape!r}; one of {', '.join(SHAPES)}")
        if cluster is not None and cluster not in self.clusters:
            raise BadInput(f"node {id!r} names an unknown cluster {cluster!r}")
        n = Node(id, tuple(line for line in lines if line) or (id,), shape, fill, cluster)
        self.nodes[id] = n
        return n

    def edge(self, src: str, dst: str, *lines: str, style: str = "solid", color: str = "#333333") -> Edge:
        if style not in EDGE_STYLES:
            raise BadInput(f"unknown edge style {style!r}; one of {', '.join(EDGE_STYLES)}")
        for end in (src, dst):
            if end not in self.nodes:
                raise BadInput(f"edge {src}->{dst} names an unknown node {end!r}")
        e = Edge(src, dst, tuple(line for line in lines if line), style, color)
        self.edges.append(e)
        return e

    def cluster(self, id: str, *lines: str) -> Cluster:
        c = Cluster(id, tuple(line for line in lines if line))
        self.clusters[id] = c
        return c

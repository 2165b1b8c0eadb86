"""Drawings of a Flow's graph and of a Document's tree, as SVG, from the public API only.

A drawing is first a small :class:`~.graph.Graph` (nodes, edges, clusters); :func:`~.render.render_svg`
then lays it out with Graphviz's ``dot`` when that program is on PATH, and otherwise with the
pure-Python layered layout of :mod:`.layout`, so a drawing never needs a system binary.
"""

from .document import document_graph, document_svg
from .flow import flow_graph, flow_svg
from .graph import Graph
from .render import ENGINES, render_svg

__all__ = ["Graph", "ENGINES", "render_svg", "flow_graph", "flow_svg", "document_graph", "document_svg"]

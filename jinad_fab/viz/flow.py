"""A Flow's graph: the Gateway, every Pod with its head, shards and replicas, and the `needs` edges.

Reads only what a user can read: ``flow.pods`` (name -> the Pod's options) and
``flow.topological_order()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .graph import Graph
from .render import render_svg

if TYPE_CHECKING:
    from ..flow import Flow

__all__ = ["flow_graph", "flow_svg"]

GATEWAY_IN, GATEWAY_OUT = "gateway", "gateway/out"


def _option(spec: Any, name: str, default: Any = None) -> Any:
    """A Pod option, whether the Flow keeps its Pods as mappings or as spec objects."""
    if isinstance(spec, Mapping):
        return spec.get(name, default)
    value = getattr(spec, name, default)
    return default if value is None else value


def _needs(spec: Any) -> list[str]:
    needs = _option(spec, "needs", ()) or ()
    return [needs] if isinstance(needs, str) else list(needs)


def _uses_name(uses: Any) -> str:
    if uses is None:
        return "_pass"
    if isinstance(uses, Mapping):
        return str(uses.get("jtype", "?"))
    if isinstance(uses, type):
        return uses.__name__
    text = str(uses).strip()
    return text.splitlines()[0][:40] if text else "?"


def flow_graph(flow: Flow) -> Graph:
    g = Graph("flow", direction="LR")
    g.node(GATEWAY_IN, "gateway", shape="ellipse", fill="#ffe7b3")
    pods = flow.pods
    order = flow.topological_order()
    entries: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    for name in order:
        spec = pods[name]
        shards, parallel = int(_option(spec, "shards", 1)), int(_option(spec, "parallel", 1))
        needs = _needs(spec)
        uses = _uses_name(_option(spec, "uses"))
        if shards == 1 and parallel == 1:
            g.node(name, name, f"uses: {uses}")
            entries[name] = exits[name] = [name]
        else:
            g.cluster(name, name, f"uses: {uses}", f"shards={shards} parallel={parallel}")
            peas = []
            for s in range(shards):
                for r in range(parallel):
                    parts = ([f"shard-{s}"] if shards > 1 else []) + ([f"replica-{r}"] if parallel > 1 else [])
                    pea = f"{name}/{'/'.join(parts)}"
                    g.node(pea, *parts, cluster=name)
                    peas.append(pea)
            if shards > 1 or len(needs) > 1:  # a head fans the requests out (or joins the needs)
                head = f"{name}/head"
                g.node(head, "head", shape="diamond", fill="#dde8d0", cluster=name)
                for pea in peas:
                    g.edge(head, pea, style="dotted")
                entries[name] = [head]
            else:
                entries[name] = peas
            exits[name] = peas
        for n in needs:
            for src in [GATEWAY_IN] if n == "gateway" else exits[n]:
                for dst in entries[name]:
                    g.edge(src, dst)
    g.node(GATEWAY_OUT, "gateway", shape="ellipse", fill="#ffe7b3")
    needed = {n for name in order for n in _needs(pods[name])}
    leaves = [name for name in order if name not in needed]
    for name in leaves:
        for src in exits[name]:
            g.edge(src, GATEWAY_OUT)
    if not order:
        g.edge(GATEWAY_IN, GATEWAY_OUT)
    return g


def flow_svg(flow: Flow, path: str | os.PathLike | None = None, engine: str = "auto") -> str:
    """The Flow's DAG as SVG (see :func:`jinad_fab.viz.render_svg` for `engine`)."""
    return render_svg(flow_graph(flow), path, engine)

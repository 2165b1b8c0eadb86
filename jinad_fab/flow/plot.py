"""Flow.plot: the Flow's DAG as SVG — the Gateway, every Pod with its head, shards and replicas, and
the `needs` edges between them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..plotting import label, load_graphviz, render_svg

if TYPE_CHECKING:
    from .builder import Flow

__all__ = ["flow_svg"]

_GATEWAY_IN, _GATEWAY_OUT = "gateway", "gateway/out"


def _uses_name(uses: Any) -> str:
    if isinstance(uses, dict):
        return str(uses.get("jtype", "?"))
    text = str(uses).strip()
    return text.splitlines()[0][:40] if text else "?"


def flow_svg(flow: Flow, path: str | os.PathLike | None = None) -> str:
    gv = load_graphviz()
    g = gv.Digraph("flow", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "compound": "true"},
                   node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "#eef4fb",
                              "fontname": "Helvetica", "fontsize": "10"},
                   edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    g.node(_GATEWAY_IN, "gateway", shape="ellipse", fillcolor="#ffe7b3")
    g.node(_GATEWAY_OUT, "gateway", shape="ellipse", fillcolor="#ffe7b3")
    pods = flow.pods
    entries: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    for name in flow.topological_order():
        spec = pods[name]
        shards, parallel = int(spec.get("shards", 1)), int(spec.get("parallel", 1))
        needs = spec["needs"]
        uses = _uses_name(spec.get("uses"))
        if shards == 1 and parallel == 1:
            g.node(name, label(name, f"uses: {uses}"))
            entries[name] = exits[name] = [name]
        else:
            with g.subgraph(name=f"cluster_{name}") as c:
                c.attr(label=label(name, f"uses: {uses}", f"shards={shards} parallel={parallel}"),
                       style="rounded,dashed", color="#7f9fbf", fontname="Helvetica", fontsize="10")
                peas = []
                for s in range(shards):
                    for r in range(parallel):
                        parts = ([f"shard-{s}"] if shards > 1 else []) + ([f"replica-{r}"] if parallel > 1 else [])
                        pea = f"{name}/{'/'.join(parts)}"
                        c.node(pea, label(*parts))
                        peas.append(pea)
                head_needed = shards > 1 or len(needs) > 1
                if head_needed:
                    head = f"{name}/head"
                    c.node(head, "head", shape="diamond", fillcolor="#dde8d0")
                    for pea in peas:
                        c.edge(head, pea, style="dotted")
                    entries[name] = [head]
                else:
                    entries[name] = peas
                exits[name] = peas
        for n in needs:
            sources = [_GATEWAY_IN] if n == "gateway" else exits[n]
            for src in sources:
                for dst in entries[name]:
                    g.edge(src, dst)
    for name in flow._leaves():
        for src in exits[name]:
            g.edge(src, _GATEWAY_OUT)
    return render_svg(g, path)

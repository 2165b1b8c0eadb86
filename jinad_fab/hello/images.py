"""``jinad-fab hello images``: index scikit-learn's bundled digits with a real Flow, search with
held-out digits, score the answers against the labels and write ``hello-world.html``.

The Flow is ``encoder`` (a projection fitted with numpy's SVD on the indexed digits, ``parallel``
replicas) -> ``index`` (the built-in ``_index``, ``shards`` shards, euclidean). Every Pod is its
own process; with ``--inventory`` they are placed on the inventory's hosts.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
from typing import Any

from .. import Document, DocumentArray, Flow
from ..errors import BadInput, JinadFabError
from ._common import Progress, Timings, pea_env, writable_dir
from .digits import load_digits, split
from .encoders import ProjectionEncoder, fit_projection
from .evaluate import precision_recall, random_baseline, recall_ceiling
from .placement import LOCAL, HelloPlacement, PodPlan, flow_add_args, plan, probe, shared_token
from .png import digit_data_uri
from .report import REPORT_NAME, render_report

WORKSPACE = "hello-images-workspace"


@dataclasses.dataclass
class ImagesOptions:
    workdir: str | os.PathLike = "."
    seed: int = 0
    dim: int = 32
    shards: int = 2
    parallel: int = 2
    top_k: int = 10
    queries: int = 200
    request_size: int = 100
    inventory: Any = None  # a jinad_fab.deploy.inventory.Inventory, or None: everything local
    timeout_ready: float = 60.0
    verbose: bool = False  # the Peas' INFO logs too

    def check(self) -> None:
        for name, low, high in (("dim", 1, 64), ("shards", 1, 16), ("parallel", 1, 16), ("top_k", 1, 1000),
                                ("queries", 1, 1000), ("request_size", 1, 10_000)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise BadInput(f"{name.replace('_', '-')} must be a whole number from {low} to {high}, got {value!r}")


def build_flow(opts: ImagesOptions, model: str, workspace: str, hp: HelloPlacement | None) -> Flow:
    enc = flow_add_args(hp, "encoder", [model]) if hp else {}
    idx = flow_add_args(hp, "index") if hp else {}
    token = shared_token(hp) if hp else None  # what a spread Pod's Peas send to each of their daemons
    return (Flow(timeout_ready=opts.timeout_ready, env=pea_env(opts.verbose), **({"token": token} if token else {}))
            .add(name="encoder", uses=ProjectionEncoder, parallel=opts.parallel, uses_with={"model": model}, **enc)
            .add(name="index", uses="_index", shards=opts.shards,
                 uses_with={"metric": "euclidean", "top_k": opts.top_k, "dim": opts.dim, "durability": "normal"},
                 uses_metas={"workspace": workspace}, **idx))


def _flow_svg(flow: Flow) -> tuple[str | None, str]:
    """The Flow's graph: Graphviz's dot when installed, else the built-in layout; should dot itself
    fail, the built-in layout still draws it."""
    try:
        return flow.plot(), ""
    except (OSError, JinadFabError):
        pass
    try:
        return flow.plot(engine="python"), ""
    except (OSError, JinadFabError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def run_images(opts: ImagesOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the demo; returns the summary (what ``--json`` prints). Raises JinadFabError subclasses."""
    progress = progress or Progress()
    opts.check()
    timings = Timings()
    workdir = writable_dir(opts.workdir)
    workspace = workdir / WORKSPACE
    hp = None
    if opts.inventory is not None:
        with timings.stage("place Pods"):
            progress.status("placing the Pods on the inventory's hosts")
            hp = plan(opts.inventory, [PodPlan("encoder", ("gpu", "cpu"), parallel=opts.parallel),
                                       PodPlan("index", ("cpu",), shards=opts.shards)])
            probe(hp)
    with timings.stage("load digits"):
        progress.status("loading the digits bundled with scikit-learn")
        digits = load_digits()
        sp = split(len(digits.labels), opts.queries, opts.seed)
    with timings.stage("fit encoder"):
        progress.status(f"fitting the SVD projection to {opts.dim} dimensions on {len(sp.index)} digits")
        if workspace.exists():  # the index from an earlier run would refuse the same ids
            shutil.rmtree(workspace)
        workspace.mkdir()
        model = str(workspace / "projection.npz")
        fit_info = fit_projection(digits.images[sp.index].reshape(len(sp.index), -1), opts.dim, model)
    flow = build_flow(opts, model, str(workspace), hp)
    index_docs = DocumentArray(Document(id=f"digit-{i}", blob=digits.images[i], tags={"label": int(digits.labels[i])})
                               for i in sp.index.tolist())
    query_docs = DocumentArray(Document(id=f"query-{i}", blob=digits.images[i]) for i in sp.queries.tolist())
    results = DocumentArray()
    with timings.stage("start Flow"):
        progress.status("starting the Flow (every Pod is a process)")
        flow.start()
    try:
        with timings.stage("index"), progress.bar("indexing", len(index_docs)) as advance:
            flow.index(index_docs, request_size=opts.request_size, return_results=False,
                       on_done=lambda r: advance(len(r.docs)))
        with timings.stage("search"), progress.bar("searching", len(query_docs)) as advance:
            flow.search(query_docs, request_size=opts.request_size, parameters={"top_k": opts.top_k},
                        return_results=False, on_done=lambda r: (results.extend(r.docs), advance(len(r.docs))))
    finally:
        with timings.stage("stop Flow"):
            flow.close()
    with timings.stage("evaluate"):
        by_id = {d.id: d for d in results}
        if len(by_id) != len(query_docs):
            raise JinadFabError(f"asked {len(query_docs)} queries, got {len(by_id)} answers back")
        q_rows = sp.queries.tolist()
        match_labels = [[int(m.tags["label"]) for m in by_id[f"query-{i}"].matches] for i in q_rows]
        q_labels = digits.labels[sp.queries]
        metrics = precision_recall(q_labels, match_labels, digits.labels[sp.index], opts.top_k)
        baseline = random_baseline(q_labels, digits.labels[sp.index], opts.top_k, opts.seed)
        ceiling = recall_ceiling(q_labels, digits.labels[sp.index], opts.top_k)
    with timings.stage("report"):
        progress.status("writing the report")
        rows = []
        for i in q_rows:
            label = int(digits.labels[i])
            matches = [{"id": m.id, "uri": digit_data_uri(m.blob), "score": m.scores["euclidean"],
                        "hit": int(m.tags["label"]) == label} for m in by_id[f"query-{i}"].matches]
            rows.append({"id": f"query-{i}", "label": label, "uri": digit_data_uri(digits.images[i]),
                         "matches": matches})
        svg, svg_error = _flow_svg(flow)
    report_path = workdir / REPORT_NAME
    pods = {
        "encoder": {"uses": "ProjectionEncoder", "peas": opts.parallel,
                    "host": hp.host_of("encoder") if hp else LOCAL, "hosts": hp.hosts_of("encoder") if hp else [LOCAL]},
        "index": {"uses": "_index", "peas": opts.shards, "host": hp.host_of("index") if hp else LOCAL,
                  "hosts": hp.hosts_of("index") if hp else [LOCAL]},
    }
    summary: dict[str, Any] = {
        "report": str(report_path),
        "index_size": len(index_docs),
        "queries": len(query_docs),
        "top_k": opts.top_k, "dim": opts.dim, "shards": opts.shards, "parallel": opts.parallel, "seed": opts.seed,
        "explained_variance": round(fit_info["explained_variance"], 4),
        "metrics": metrics,
        "baseline": baseline,
        "recall_ceiling": round(ceiling, 4),
        "queries_with_misses": sum(1 for row in rows if not all(m["hit"] for m in row["matches"])),
        "pods": pods,
        "placement": hp.as_dict() if hp else None,
        "notes": list(hp.notes) if hp else [],
        "timings": dict(timings),
    }
    with timings.stage("report"):
        _write(report_path, render_report(summary, rows, svg, svg_error))
    summary["timings"] = dict(timings)
    summary["timings"]["total"] = sum(timings.values())
    return summary


def _write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise BadInput(f"cannot write the report to {str(path)!r}: {exc.strerror or exc}") from exc


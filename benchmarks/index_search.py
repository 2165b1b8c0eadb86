"""Top-10 search with the built-in `_index` (faiss and numpy engines) against faiss `IndexFlatL2`, one run.

    python benchmarks/index_search.py                      # 100k and 1M x 128, and approximate at 1M
    python benchmarks/index_search.py --sizes 100000 --no-flow --ann-size 200000

Exact part (random uniform data, as the first measurements were): for each size, index time,
queries/s batched (all queries in one call) and one at a time, recall@10 against a float64
brute-force check, and memory per stored vector (resident growth over building and a first search,
after a small index of each kind was built and searched first, with the allocator's free pages
returned before each reading: see warm_up() and rss()), for faiss `IndexFlatL2` and `_index` with each
engine, measured round by round in alternation so they see the same machine load (medians of the
rounds; a ratio is the median of the rounds' ratios). `_index` is
measured in-process (its core `search_vectors`, the `/search` handler building matches, reopening; index
time also as the median of `--rounds` builds into fresh stores, sequential and random ids in alternation,
random as Documents made without an id get them)
and, for the sizes in `--flow-sizes`, through a real Flow (one Pea, native protocol).

Approximate part (`--ann-size`, clustered data: Gaussian clusters of uneven sizes, queries drawn from
the same mixture): `_index` exact next to `index: ivf` (and `hnsw` with `--ann-kinds ivf,hnsw`),
build time included in "index s", recall@10 against float64 brute force and QPS as a multiple of the
exact search in the same run; then each approximate store restarted: "index s" is the time to open
it and answer its first 500 queries from the saved index, next to the build time above.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jinad_fab import Document, DocumentArray, Flow  # noqa: E402
from jinad_fab.executors.index import IndexExecutor  # noqa: E402

K = 10


class Ratio(float):
    """A ratio cell of the table (printed as 1.23x)."""


def rss() -> int:
    """Resident bytes once Python's garbage and the allocator's free pages are given back: what the
    process holds, not what glibc keeps cached after a large temporary (it serves sizes up to the
    largest freed block from its heap afterwards, and returns that heap rarely)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return psutil.Process().memory_info().rss


def warm_up(X: np.ndarray, Q: np.ndarray, engines: list[str]) -> None:
    """Build, search and close a small index of each kind first, so that the memory measured next is
    what the vectors cost, not the code pages and buffers the first index of a process brings in
    (about 3 MB: numpy's, SQLite's and faiss's code and BLAS buffers)."""
    with tempfile.TemporaryDirectory() as ws:
        for engine in engines:
            ex, _ = build_index(ws, X[:5000], _random_ids(5000), engine=engine)
            for q in (Q, Q[:100], Q[:1]):
                ex.search_vectors(q, K)
            ex.close()
    try:
        import faiss
    except ImportError:
        return
    fx = faiss.IndexFlatL2(X.shape[1])
    fx.add(X[:5000])
    for q in (Q, Q[:100], Q[:1]):
        fx.search(q, K)


def brute_force(X: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    """float64 ground truth, in blocks of rows and queries."""
    xx = np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64))
    out = []
    for q0 in range(0, len(Q), 50):
        q = Q[q0:q0 + 50].astype(np.float64)
        d = np.empty((len(q), len(X)))
        for r0 in range(0, len(X), 200_000):
            d[:, r0:r0 + 200_000] = xx[r0:r0 + 200_000][None, :] - 2 * q @ X[r0:r0 + 200_000].astype(np.float64).T
        out.append(np.argpartition(d, k, axis=1)[:, :k])
    return np.concatenate(out)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found[:, :K], truth))
    return hits / truth.size


def timed_qps(fn, Q: np.ndarray) -> tuple[float, object]:
    time.sleep(0.5)  # let the other engine's BLAS/OpenMP threads stop spinning first
    t = time.perf_counter()
    out = fn(Q)
    return len(Q) / (time.perf_counter() - t), out


def one_at_a_time(fn, Q: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(q[None, :]) for q in Q])


def clustered(n: int, d: int, rng: np.random.Generator, centres: int = 1000,
              latent: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """n points and 2,000 queries from one mixture of Gaussian clusters of uneven size and spread in a
    `latent`-dimensional space, mapped linearly into d dimensions, plus a little isotropic noise: data
    of low intrinsic dimension, as embeddings are (not uniform noise, the worst case of graph indexes)."""
    C = rng.standard_normal((centres, latent)).astype(np.float32) * 3
    weights = rng.pareto(1.5, centres) + 1
    weights /= weights.sum()
    spread = rng.uniform(0.5, 1.5, centres).astype(np.float32)
    W = (rng.standard_normal((latent, d)) / np.sqrt(latent)).astype(np.float32)

    def draw(m):
        c = rng.choice(centres, size=m, p=weights)
        out = np.empty((m, d), dtype=np.float32)
        for i in range(0, m, 100_000):
            cc = c[i:i + 100_000]
            z = C[cc] + rng.standard_normal((len(cc), latent), dtype=np.float32) * spread[cc, None]
            out[i:i + 100_000] = z @ W + rng.standard_normal((len(cc), d), dtype=np.float32) * 0.1
        return out

    return draw(n), draw(2000)


def build_index(ws: str, X: np.ndarray, ids: list[str], **kwargs) -> tuple[IndexExecutor, float]:
    ex = IndexExecutor(metas={"workspace": ws, "name": kwargs.get("engine", "idx")}, **kwargs)
    t = time.perf_counter()
    for i in range(0, len(X), 10_000):  # requests of 10,000, each its own transaction (fsynced)
        ex.add(ids[i:i + 10_000], X[i:i + 10_000])
    return ex, time.perf_counter() - t


def _random_ids(n: int) -> list[str]:
    rng = np.random.default_rng(n)
    return [rng.bytes(16).hex() for _ in range(n)]


def bench_size(X, Q, Q1, truth, rows: list, rounds: int, flow: bool) -> None:
    n = len(X)
    try:
        import faiss
    except ImportError:
        faiss = None
    engines = ["faiss", "numpy"] if faiss is not None else ["numpy"]
    warm_up(X, Q, engines)
    with tempfile.TemporaryDirectory() as ws:
        built = {}
        ids = [f"{i:08d}" for i in range(n)]
        for engine in engines:
            before = rss()
            ex, t_index = build_index(ws, X, ids, engine=engine)
            ex.search_vectors(Q[:100], K)  # maps (touches) every page of the vector file
            built[engine] = (ex, t_index, rss() - before)
        # a Document made without an id gets a random one (32 hex digits): the id index then takes every
        # insert at a random place, unlike the sequential ids above
        # index time alone, sequential and random ids in alternation, each into a fresh store: medians
        random_ids, t_build = _random_ids(n), {"sequential": [], "random": []}
        for r in range(rounds):
            for kind, kind_ids in (("sequential", ids), ("random", random_ids)):
                rex, t = build_index(os.path.join(ws, f"{kind}-{r}"), X, kind_ids, engine=engines[0])
                rex.close()
                shutil.rmtree(os.path.join(ws, f"{kind}-{r}"))
                t_build[kind].append(t)
        if faiss is not None:
            before = rss()
            fx = faiss.IndexFlatL2(X.shape[1])
            t = time.perf_counter()
            fx.add(X)
            t_faiss = time.perf_counter() - t
            fx.search(Q[:100], K)
            fmem = rss() - before
        # alternate the engines round by round so all see the same machine load; report each one's median,
        # and ratios as the median of the per-round ratios (each round's engines ran seconds apart)
        runs: dict[str, list[list[float]]] = {name: [] for name in ["faiss ref", *engines]}
        found: dict[str, np.ndarray] = {}
        for _ in range(rounds):
            for name in runs:
                if name == "faiss ref":
                    q, (_, got) = timed_qps(lambda Q: fx.search(Q, K), Q)
                    q1, _ = timed_qps(lambda Q: one_at_a_time(lambda x: fx.search(x, K)[1], Q), Q1)
                else:
                    ex = built[name][0]
                    q, (got, _) = timed_qps(lambda Q, ex=ex: ex.search_vectors(Q, K), Q)
                    q1, _ = timed_qps(lambda Q, ex=ex: one_at_a_time(lambda x: ex.search_vectors(x, K)[0], Q), Q1)
                runs[name].append([q, q1])
                found[name] = got
        best = {name: np.median(np.array(r), axis=0).tolist() for name, r in runs.items()}
        if faiss is not None:
            rows.append(["faiss IndexFlatL2 (reference)", n, t_faiss, *best["faiss ref"],
                         recall(found["faiss ref"][: len(truth)], truth), 4 * X.shape[1], fmem / n])
            del fx
        else:
            rows.append(["faiss IndexFlatL2 (not installed)", n, None, None, None, None, None, None])
        for engine in engines:
            ex, t_index, mem = built[engine]
            rows.append([f"_index engine={engine} (search_vectors)", n, t_index, *best[engine],
                         recall(found[engine][: len(truth)], truth), ex.nbytes / n, mem / n])
        for kind, times in t_build.items():
            rows.append([f"_index engine={engines[0]}, {kind} ids (index s only)", n, float(np.median(times)),
                         None, None, None, None, None])
        if faiss is not None:
            for engine in engines:
                ratio = np.median(np.array(runs[engine]) / np.array(runs["faiss ref"]), axis=0)
                rows.append([f"  -> _index {engine} / faiss", n, None, Ratio(ratio[0]), Ratio(ratio[1]),
                             None, None, None])
        ex = built[engines[0]][0]
        for other in engines[1:]:
            built[other][0].close()

        # the /search handler: the same search plus building the match Documents
        def handler(Q):
            docs = DocumentArray([Document(embedding=q) for q in Q])
            ex.search(docs=docs, parameters={"top_k": K}, header={})
            return docs

        qps = qps1 = 0.0
        for _ in range(rounds):
            q, docs = timed_qps(handler, Q)
            q1, _ = timed_qps(lambda Q: [handler(q[None, :]) for q in Q], Q1)
            qps, qps1 = max(qps, q), max(qps1, q1)
        found_h = np.array([[int(m.id) for m in d.matches] for d in docs[: len(truth)]])
        rows.append([f"_index /search handler ({engines[0]})", n, None, qps, qps1, recall(found_h, truth), None, None])
        ex.close()
        gc.collect()
        before = rss()
        t = time.perf_counter()
        again = IndexExecutor(metas={"workspace": ws, "name": engines[0]})
        t_open = time.perf_counter() - t
        rows.append(["_index reopen (maps the files)", n, t_open, None, None, None, None, (rss() - before) / n])
        again.close()
    if flow:
        bench_flow(X, Q, Q1, truth, rows)


def bench_ann(n: int, d: int, kinds: list[str], rounds: int, rows: list, rng: np.random.Generator) -> None:
    X, Q = clustered(n, d, rng)
    t = time.perf_counter()
    truth = brute_force(X, Q[:500], K)
    print(f"clustered {n:,} x {d}: ground truth for 500 queries in {time.perf_counter() - t:.1f} s", flush=True)
    Q1 = Q[:100]
    with tempfile.TemporaryDirectory() as ws:
        exs = {}
        ids = [f"{i:08d}" for i in range(n)]
        for kind in ["flat", *kinds]:
            gc.collect()
            before = rss()
            ex, t_index = build_index(os.path.join(ws, kind), X, ids, index=kind)
            t = time.perf_counter()
            ex.search_vectors(Q[:1], K)  # an approximate index is built at its first search
            exs[kind] = (ex, t_index + time.perf_counter() - t, rss() - before)
            print(f"  {kind}: indexed (and built) in {exs[kind][1]:.1f} s", flush=True)
        best = {kind: [0.0, 0.0] for kind in exs}
        found = {}
        for _ in range(rounds):
            for kind, (ex, _, _) in exs.items():
                q, (got, _) = timed_qps(lambda Q, ex=ex: ex.search_vectors(Q, K), Q)
                q1, _ = timed_qps(lambda Q, ex=ex: one_at_a_time(lambda x: ex.search_vectors(x, K)[0], Q), Q1)
                best[kind] = [max(best[kind][0], q), max(best[kind][1], q1)]
                found[kind] = got
        for kind, (ex, t_index, mem) in exs.items():
            label = "exact (flat)" if kind == "flat" else f"index={kind}"
            cfg = "" if kind == "flat" else (f", nprobe={ex._ann_cfg['nprobe']}, nlist={ex._ann.nlist}" if kind == "ivf"
                                             else f", M={ex._ann_cfg['hnsw_m']}, ef_search={ex._ann_cfg['ef_search']}")
            rows.append([f"_index {label}{cfg}, clustered", n, t_index, *best[kind],
                         recall(found[kind][: len(truth)], truth), ex.nbytes / n, mem / n])
        for kind in kinds:
            rows.append([f"  -> {kind} / exact", n, None, Ratio(best[kind][0] / best["flat"][0]),
                         Ratio(best[kind][1] / best["flat"][1]), None, None, None])
        for ex, _, _ in exs.values():
            ex.close()  # (saves an approximate index with every row it holds)
        for kind in kinds:  # a restart: open the store and answer the first search, reading the saved index
            gc.collect()
            t = time.perf_counter()
            ex = IndexExecutor(metas={"workspace": os.path.join(ws, kind), "name": "idx"}, index=kind)
            got, _ = ex.search_vectors(Q[: len(truth)], K)
            t_open = time.perf_counter() - t
            rows.append([f"_index index={kind} restarted (saved index)", n, t_open, None, None,
                         recall(got, truth), None, None])
            ex.close()


def bench_flow(X, Q, Q1, truth, rows: list) -> None:
    n = len(X)
    with tempfile.TemporaryDirectory() as ws:
        f = Flow(workspace=ws, timeout=600).add(uses="_index")
        with f:
            docs = (Document(id=f"{i:08d}", embedding=X[i]) for i in range(n))
            t = time.perf_counter()
            f.index(docs, request_size=1000, return_results=False)
            t_index = time.perf_counter() - t
            qdocs = DocumentArray([Document(embedding=q) for q in Q])
            t = time.perf_counter()
            res = f.search(qdocs, parameters={"top_k": K}, request_size=100)
            qps = len(Q) / (time.perf_counter() - t)
            by_id = {d.id: d for d in res}
            found = np.array([[int(m.id) for m in by_id[d.id].matches] for d in qdocs[: len(truth)]])
            t = time.perf_counter()
            for q in Q1:
                f.search(Document(embedding=q), parameters={"top_k": K})
            qps1 = len(Q1) / (time.perf_counter() - t)
        rows.append(["_index through a Flow (1 Pea)", n, t_index, qps, qps1, recall(found, truth), None, None])


def render(rows: list, title: str) -> None:
    headers = ["engine", "vectors", "index s", "QPS batched", "QPS one-by-one", "recall@10", "bytes/vector",
               "RSS bytes/vector"]

    def fmt(v, i):
        if v is None:
            return "-"
        if i == 1:
            return f"{v:,}"
        if i == 5:
            return f"{v:.4f}"
        if isinstance(v, Ratio):
            return f"{v:.2f}x"
        if i in (3, 4, 6, 7):
            return f"{v:,.0f}"
        return f"{v:.2f}"

    cells = [[r[0]] + [fmt(v, i) for i, v in enumerate(r) if i > 0] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for c in cells:
            print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
        return
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for c in cells:
        table.add_row(*c)
    Console(width=160).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--flow-sizes", default="100000")
    ap.add_argument("--no-flow", action="store_true")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=2000, help="batched queries")
    ap.add_argument("--single", type=int, default=100, help="queries sent one at a time")
    ap.add_argument("--truth", type=int, default=500, help="queries checked against brute force")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per measurement (exact part: medians; "
                    "approximate part: best)")
    ap.add_argument("--ann-size", type=int, default=1_000_000, help="clustered vectors for approximate search "
                    "(0: skip)")
    ap.add_argument("--ann-kinds", default="ivf", help="approximate index kinds to measure: ivf,hnsw")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows: list = []
    flow_sizes = {int(s) for s in args.flow_sizes.split(",") if s}
    for n in (int(s) for s in args.sizes.split(",")):
        X = rng.random((n, args.dim), dtype=np.float32)
        Q = rng.random((args.queries, args.dim), dtype=np.float32)
        truth = brute_force(X, Q[: args.truth], K)
        bench_size(X, Q, Q[: args.single], truth, rows, args.rounds, not args.no_flow and n in flow_sizes)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    render(rows, f"exact top-{K} search, {args.dim}-d float32, random uniform data "
                 f"({os.cpu_count()} CPUs, load average {load}, numpy {np.__version__})")
    if args.ann_size:
        rows = []
        bench_ann(args.ann_size, args.dim, [k for k in args.ann_kinds.split(",") if k], args.rounds, rows, rng)
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        render(rows, f"approximate top-{K} search, {args.dim}-d float32, clustered data "
                     f"({os.cpu_count()} CPUs, load average {load})")


if __name__ == "__main__":
    main()

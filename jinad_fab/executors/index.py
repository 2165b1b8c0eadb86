"""``_index``: the built-in Executor that stores Documents and finds their nearest neighbours.

Endpoints: ``/index`` (create), ``/search``, ``/update`` (replace by id), ``/delete`` (by id).

Layout in memory: one float32 matrix ``A`` of shape (capacity, dim + 1). Row ``i`` holds the
embedding ``x`` of the Document in slot ``i`` and, in its last column, ``-|x|²/2``. One matrix
product of the queries ``[q, 1]`` with ``A`` then yields ``q·x - |x|²/2``, which ranks like the
negative euclidean distance; the same product with ``[q, 0]`` is the inner product. The search
scans ``A`` in blocks (a float32 BLAS product per block of queries x block of rows), keeps only the
maximum of each *group* of rows (rows ``j, j + m, j + 2m, ...`` of a block), and then looks at the
rows of the ``k`` best groups only. That is exact: the ``k`` best group maxima are ``k`` rows that
all score at least the ``k``-th best group maximum, and every row of any other group scores at
most that, so the true top-k lies in the chosen groups. Final scores are recomputed from the raw
vectors, so a Document's euclidean distance to itself is exactly 0.

Scores (``match.scores[metric]``) and their order:

* ``euclidean`` (default): the distance, ascending;
* ``cosine``: the cosine *distance* ``1 - cos``, ascending;
* ``inner_product``: the similarity ``q·x``, descending.

The search handler sets ``header["merge"]`` so that the answers of several shards are re-ranked
by the same score and cut to ``top_k`` (see :mod:`jinad_fab.runtime.merge`). Ties are broken by
storage position (insertion order, until deletions move rows).

Persistence: SQLite in WAL mode in the Executor's workspace (one file per shard). Every request
that changes the index is one transaction, committed before the in-memory matrix changes, so a
crash leaves either the state before or after the request. The matrix is rebuilt from SQLite
when the Executor starts.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..document import Document, DocumentArray
from ..errors import BadConfig, BadDocument, BadInput
from .base import Executor, requests

__all__ = ["IndexExecutor", "METRICS"]

# metric -> ascending? (True: smaller is closer)
METRICS: dict[str, bool] = {"euclidean": True, "cosine": True, "inner_product": False}
_SCHEMA_VERSION = "1"
_DURABILITY = ("full", "normal")
_ROW_ALIGN = 32  # capacity is kept a multiple of the group size


class IndexExecutor(Executor):
    """Stores Documents with their embeddings; exact top-k search by euclidean, cosine or inner product.

    ``uses_with``: ``dim`` (fixed by the first indexed Document when not given), ``metric``
    (default ``euclidean``), ``top_k`` (default 10), ``durability`` (``full``: fsync every
    request, the default; ``normal``: survives a crash of the process, not of the machine),
    ``query_block`` / ``row_block`` / ``group_size`` (search tiling, rarely worth changing).
    """

    def __init__(self, dim: int | None = None, metric: str = "euclidean", top_k: int = 10,
                 durability: str = "full", query_block: int = 512, row_block: int = 16384,
                 group_size: int = 32, **kwargs: Any):
        super().__init__(**kwargs)
        if dim is not None and (not _is_int(dim) or dim < 1):
            raise BadConfig(f"_index: dim must be a positive integer, got {dim!r}")
        if metric not in METRICS:
            raise BadConfig(f"_index: unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if not _is_int(top_k) or top_k < 1:
            raise BadConfig(f"_index: top_k must be a positive integer, got {top_k!r}")
        if durability not in _DURABILITY:
            raise BadConfig(f"_index: durability must be one of {_DURABILITY}, got {durability!r}")
        for name, v in (("query_block", query_block), ("row_block", row_block), ("group_size", group_size)):
            if not _is_int(v) or v < 1:
                raise BadConfig(f"_index: {name} must be a positive integer, got {v!r}")
        if row_block % group_size or _ROW_ALIGN % group_size:
            raise BadConfig(f"_index: row_block must be a multiple of group_size, and group_size must "
                            f"divide {_ROW_ALIGN}")
        if int(self.runtime_args.get("parallel") or 1) > 1:
            # replicas would share one SQLite file but each keep its own matrix, and drift apart
            raise BadConfig("_index cannot run with parallel > 1: its replicas would not see each other's "
                            "writes; use shards=N to spread Documents over several Peas")
        self.metric = metric
        self.default_top_k = int(top_k)
        self._qb, self._rb, self._gs = int(query_block), int(row_block), int(group_size)
        self.dim: int | None = int(dim) if dim is not None else None
        self._A: np.ndarray | None = None  # (capacity, dim + 1) float32
        self._n = 0
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}
        self._has_doc: np.ndarray = np.zeros(0, dtype=bool)  # slot stores more than id + embedding
        self._inv_norm: np.ndarray | None = None  # cached 1/|x| for cosine, dropped on every change
        self._db = self._open_db(os.path.join(self.workspace, "index.sqlite"), durability)
        self._load()

    # ------------------------------------------------------------------ endpoints
    @requests(on="/index")
    def index(self, docs: DocumentArray) -> None:
        if not docs:
            return
        ids = docs.ids
        seen: set[str] = set()
        for i in ids:
            if i in self._slot:
                raise BadDocument("is already indexed; use /update to replace it", i)
            if i in seen:
                raise BadDocument("appears twice in one /index request", i)
            seen.add(i)
        X = self._embeddings(docs, required=True)
        self.add(ids, X, [_serialise(d) for d in docs])

    @requests(on="/update")
    def update(self, docs: DocumentArray) -> None:
        if not docs:
            return
        self._require_known(docs.ids, "updated")
        X = self._embeddings(docs, required=False)
        rows = [(d.id, None if X is None or d._embedding is None else i) for i, d in enumerate(docs)]
        self.replace(rows, X, [_serialise(d) for d in docs])

    @requests(on="/delete")
    def delete(self, docs: DocumentArray) -> None:
        if docs:
            self.remove(docs.ids)

    @requests(on="/search")
    def search(self, docs: DocumentArray, parameters: dict, header: dict) -> None:
        top_k = parameters.get("top_k", self.default_top_k)
        metric = parameters.get("metric", self.metric)
        if not _is_int(top_k) or top_k < 1:
            raise BadInput(f"top_k must be a positive integer, got {top_k!r} (request with Documents "
                           f"{_some(docs.ids)})")
        if metric not in METRICS:
            raise BadInput(f"unknown metric {metric!r}; known: {', '.join(METRICS)} (request with Documents "
                           f"{_some(docs.ids)})")
        header["merge"] = {"score": metric, "ascending": METRICS[metric], "top_k": int(top_k)}
        if not docs:
            return
        Q = self._embeddings(docs, required=True, what="query")
        if self._n == 0:
            for d in docs:
                d.matches = None
            return
        slots, scores = self.search_vectors(Q, int(top_k), metric)
        docs_by_slot = self._documents(np.unique(slots))
        for d, row_slots, row_scores in zip(docs, slots, scores):
            matches = []
            for s, v in zip(row_slots.tolist(), row_scores.tolist()):
                m = docs_by_slot[s]
                matches.append(Document(id=m.id, text=m.text, blob=m._blob, buffer=m.buffer, uri=m.uri,
                                        mime_type=m.mime_type, tags=m._tags, embedding=m._embedding,
                                        chunks=m._chunks, scores={metric: v}))
            d.matches = matches

    # ------------------------------------------------------------------ core API (no Documents)
    def __len__(self) -> int:
        return self._n

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._slot

    @property
    def nbytes(self) -> int:
        """Bytes held for the vectors (matrix capacity included) plus the id bookkeeping."""
        if self._A is None:
            return 0
        ids = sum(len(i) + 49 for i in self._ids) + 8 * len(self._ids)  # str objects + list pointers
        return self._A.nbytes + self._has_doc.nbytes + ids + 100 * len(self._slot)  # dict entries, roughly

    def add(self, ids: Sequence[str], X: np.ndarray, docs: Sequence[str | None] | None = None) -> None:
        """Append vectors (and serialised Documents) under new ids: one transaction, then memory."""
        X = self._check_matrix(X, ids)
        blobs = _row_bytes(X)
        payload = docs if docs is not None else [None] * len(ids)
        with self._db:  # the first Documents also fix the dimension, in the same transaction
            if self.dim is None:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(X.shape[1]),))
            self._db.executemany("INSERT INTO docs (id, embedding, doc) VALUES (?, ?, ?)",
                                 zip(ids, blobs, payload))
        self.dim = X.shape[1]
        start = self._n
        self._reserve(start + len(ids))
        self._set_rows(slice(start, start + len(ids)), X)
        self._has_doc[start:start + len(ids)] = [p is not None for p in payload]
        self._ids.extend(ids)
        for i, doc_id in enumerate(ids, start):
            self._slot[doc_id] = i
        self._n += len(ids)
        self._inv_norm = None

    def replace(self, rows: Sequence[tuple[str, int | None]], X: np.ndarray | None,
                docs: Sequence[str | None]) -> None:
        """Replace stored Documents; ``rows`` pairs each id with its row in X (None: keep the vector)."""
        with_vec = [(doc_id, r) for doc_id, r in rows if r is not None]
        if with_vec:
            X = self._check_matrix(X[[r for _, r in with_vec]], [doc_id for doc_id, _ in with_vec])
        blobs = _row_bytes(X) if with_vec else []
        with self._db:
            if with_vec:
                self._db.executemany("UPDATE docs SET embedding = ? WHERE id = ?",
                                     zip(blobs, (doc_id for doc_id, _ in with_vec)))
            self._db.executemany("UPDATE docs SET doc = ? WHERE id = ?",
                                 zip(docs, (doc_id for doc_id, _ in rows)))
        if with_vec:
            slots = np.fromiter((self._slot[doc_id] for doc_id, _ in with_vec), dtype=np.int64,
                                count=len(with_vec))
            self._set_rows(slots, X)
        for (doc_id, _), payload in zip(rows, docs):
            self._has_doc[self._slot[doc_id]] = payload is not None
        self._inv_norm = None

    def remove(self, ids: Sequence[str]) -> None:
        """Delete by ids; every id must be stored (nothing is deleted otherwise)."""
        self._require_known(ids, "deleted")
        ids = list(dict.fromkeys(ids))
        with self._db:
            self._db.executemany("DELETE FROM docs WHERE id = ?", ((i,) for i in ids))
        A = self._A
        for doc_id in ids:  # swap each removed row with the last one: O(1) per id, the matrix stays packed
            slot = self._slot.pop(doc_id)
            last = self._n - 1
            if slot != last:
                moved = self._ids[last]
                A[slot] = A[last]
                self._has_doc[slot] = self._has_doc[last]
                self._ids[slot] = moved
                self._slot[moved] = slot
            self._ids.pop()
            self._n = last
        self._inv_norm = None

    def vectors(self) -> np.ndarray:
        """The stored embeddings in slot order (a view; do not modify)."""
        if self._A is None:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return self._A[: self._n, : self.dim]

    def search_vectors(self, Q: np.ndarray, top_k: int, metric: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k: (slots, scores), both (len(Q), min(top_k, len(self))), best first."""
        metric = metric or self.metric
        if metric not in METRICS:
            raise BadInput(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        if Q.ndim != 2 or (self.dim is not None and Q.shape[1] != self.dim):
            raise BadInput(f"queries must be a (n, {self.dim}) matrix, got shape {Q.shape}")
        n, d = self._n, self.dim
        k = min(int(top_k), n)
        nq = len(Q)
        if k == 0 or nq == 0:
            return np.zeros((nq, 0), dtype=np.int64), np.zeros((nq, 0), dtype=np.float64)
        Qa = np.empty((nq, d + 1), dtype=np.float32)
        if metric == "cosine":
            norms = np.linalg.norm(Q, axis=1, keepdims=True)
            np.divide(Q, norms, out=Qa[:, :d], where=norms > 0)
            Qa[(norms[:, 0] == 0), :d] = 0
        else:
            Qa[:, :d] = Q
        Qa[:, d] = 1.0 if metric == "euclidean" else 0.0
        inv = self._inverse_norms() if metric == "cosine" else None
        slots = np.empty((nq, k), dtype=np.int64)
        for q0 in range(0, nq, self._qb):
            Qc = Qa[q0:q0 + self._qb]
            slots[q0:q0 + len(Qc)] = self._top_slots(Qc, k, inv)
        return slots, self._exact_scores(Q, slots, metric)

    # ------------------------------------------------------------------ search internals
    def _top_slots(self, Qc: np.ndarray, k: int, inv: np.ndarray | None) -> np.ndarray:
        n, A, gs, rb = self._n, self._A, self._gs, self._rb
        m = len(Qc)
        if n <= 8192 or 4 * k * gs > n:  # few rows (or a huge k): score every row
            out = np.empty((m, k), dtype=np.int64)
            step = max(1, (1 << 25) // n)  # at most 128 MB of scores at a time
            for r0 in range(0, m, step):
                s = Qc[r0:r0 + step] @ A[:n].T
                if inv is not None:
                    s *= inv[:n]
                if n <= 8192:  # stable order: ties go to the earlier slot
                    out[r0:r0 + step] = np.argsort(-s, axis=1, kind="stable")[:, :k]
                else:
                    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
                    out[r0:r0 + step] = np.take_along_axis(
                        top, np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable"), axis=1)
            return out
        rb = max(rb, (1 << 22) // m // rb * rb)  # few queries: bigger blocks, fewer BLAS calls
        groups_per_block = rb // gs
        n_padded = -(-n // gs) * gs
        G = np.empty((m, n_padded // gs), dtype=np.float32)
        S = np.empty(m * min(rb, n_padded), dtype=np.float32)
        for b0 in range(0, n_padded, rb):
            width = min(rb, n_padded - b0)
            s = S[: m * width].reshape(m, width)  # contiguous, so BLAS writes it directly
            np.matmul(Qc, A[b0:b0 + width].T, out=s)
            if inv is not None:
                s *= inv[b0:b0 + width]
            if b0 + width > n:  # padding rows of the last block never win
                s[:, n - b0:] = -np.inf
            np.max(s.reshape(m, gs, width // gs), axis=1, out=G[:, b0 // gs:(b0 + width) // gs])
        best = np.argpartition(G, G.shape[1] - k, axis=1)[:, G.shape[1] - k:]
        block = best // groups_per_block
        b0 = block * rb
        stride = np.minimum(rb, n_padded - b0) // gs  # groups in that block = stride between a group's rows
        first = b0 + (best - block * groups_per_block)
        cand = (first[:, :, None] + np.arange(gs)[None, None, :] * stride[:, :, None]).reshape(m, -1)
        # every group has a real row first, so padding rows (scored -inf) never make the top k
        padding = cand >= n
        np.minimum(cand, n - 1, out=cand)
        cs = np.einsum("qd,qcd->qc", Qc, A[cand])
        if inv is not None:
            cs *= inv[cand]
        cs[padding] = -np.inf
        order = np.lexsort((cand, -cs), axis=-1)[:, :k]  # by score, then by slot for ties
        return np.take_along_axis(cand, order, axis=1)

    def _exact_scores(self, Q: np.ndarray, slots: np.ndarray, metric: str) -> np.ndarray:
        """Scores of the chosen rows recomputed in float64 from the raw vectors; rows re-sorted by them."""
        X = self._A[slots, : self.dim].astype(np.float64)  # (nq, k, d): only k rows per query
        q = Q.astype(np.float64)[:, None, :]
        if metric == "euclidean":
            scores = np.sqrt(np.square(X - q).sum(axis=2))
        else:
            dots = np.einsum("qkd,qkd->qk", X, np.broadcast_to(q, X.shape))
            if metric == "inner_product":
                scores = dots
            else:
                nx = np.linalg.norm(X, axis=2)
                nq_ = np.linalg.norm(q, axis=2)
                denom = nx * nq_
                cos = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
                scores = 1.0 - cos
        key = scores if METRICS[metric] else -scores
        order = np.argsort(key, axis=1, kind="stable")
        slots[:] = np.take_along_axis(slots, order, axis=1)
        return np.take_along_axis(scores, order, axis=1)

    def _inverse_norms(self) -> np.ndarray:
        if self._inv_norm is None or len(self._inv_norm) < self._n:
            sq = -2.0 * self._A[:, self.dim]
            self._inv_norm = np.divide(1.0, np.sqrt(np.maximum(sq, 0)), out=np.zeros_like(sq),
                                       where=sq > 0).astype(np.float32)
        return self._inv_norm

    # ------------------------------------------------------------------ memory layout
    def _reserve(self, n: int) -> None:
        cap = 0 if self._A is None else len(self._A)
        if n <= cap:
            return
        new_cap = max(n, int(cap * 1.5), 1024)
        new_cap = -(-new_cap // _ROW_ALIGN) * _ROW_ALIGN
        A = np.zeros((new_cap, self.dim + 1), dtype=np.float32)
        has = np.zeros(new_cap, dtype=bool)
        if self._A is not None:
            A[: self._n] = self._A[: self._n]
            has[: self._n] = self._has_doc[: self._n]
        self._A, self._has_doc = A, has

    def _set_rows(self, where: slice | np.ndarray, X: np.ndarray) -> None:
        d = self.dim
        self._A[where, :d] = X
        self._A[where, d] = -0.5 * np.einsum("ij,ij->i", X, X)

    # ------------------------------------------------------------------ validation
    def _embeddings(self, docs: DocumentArray, *, required: bool, what: str = "embedding") -> np.ndarray | None:
        """The request's embeddings as a float32 (n, dim) matrix, each Document checked by id."""
        present = [d._embedding is not None for d in docs]
        if not any(present) and not required:
            return None
        if required and not all(present):
            missing = [d.id for d, p in zip(docs, present) if not p]
            raise BadDocument(f"has no embedding; every {what} Document needs one "
                              f"({len(missing)} of {len(docs)} lack one: {_some(missing)})", missing[0])
        dim = self.dim
        for d in docs:
            e = d._embedding
            if e is None:
                continue
            if e.dtype.kind not in "iuf":
                raise BadDocument(f"embedding must hold real numbers, got dtype {e.dtype}", d.id)
            if e.ndim != 1:
                raise BadDocument(f"embedding must be 1-dimensional, got shape {e.shape}", d.id)
            if dim is None:
                dim = e.shape[0]
                if dim == 0:
                    raise BadDocument("embedding is empty", d.id)
            if e.shape[0] != dim:
                raise BadDocument(f"embedding has dimension {e.shape[0]}, the index holds dimension {dim}", d.id)
        X = np.stack([d._embedding if d._embedding is not None else np.zeros(dim) for d in docs])
        X = X.astype(np.float32, copy=False)
        finite = np.isfinite(X).all(axis=1)
        if not finite.all():
            bad = docs[int(np.argmin(finite))].id
            raise BadDocument("embedding holds NaN or infinity (or overflows float32)", bad)
        return X

    def _check_matrix(self, X: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) != len(ids):
            raise BadInput(f"expected a ({len(ids)}, dim) matrix of embeddings, got shape {X.shape}")
        if X.shape[1] == 0:
            raise BadInput("embeddings must have at least one dimension")
        if self.dim is not None and X.shape[1] != self.dim:
            raise BadInput(f"embeddings have dimension {X.shape[1]}, the index holds dimension {self.dim}")
        return X

    def _require_known(self, ids: Iterable[str], verb: str) -> None:
        unknown = [i for i in ids if i not in self._slot]
        if unknown:
            raise BadDocument(f"is not in the index, so nothing was {verb} ({len(unknown)} unknown ids: "
                              f"{_some(unknown)})", unknown[0])

    # ------------------------------------------------------------------ persistence
    @staticmethod
    def _open_db(path: str, durability: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.isolation_level = "DEFERRED"  # `with db:` wraps each change in one transaction
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS docs (id TEXT NOT NULL UNIQUE, embedding BLOB NOT NULL, doc TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        return db

    def _set_dim(self, dim: int) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
        self.dim = int(dim)

    def _load(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") != _SCHEMA_VERSION:
            raise BadConfig(f"_index: {self.workspace} holds index schema {meta.get('schema')!r}, "
                            f"this version reads {_SCHEMA_VERSION!r}")
        stored = int(meta["dim"]) if "dim" in meta else None
        if stored is not None and self.dim is not None and stored != self.dim:
            raise BadConfig(f"_index: dim={self.dim} given, but {self.workspace} holds dimension {stored}")
        if stored is None:
            if self.dim is not None:
                self._set_dim(self.dim)
            return
        self.dim = stored
        rows = self._db.execute("SELECT id, embedding, doc IS NOT NULL FROM docs ORDER BY rowid").fetchall()
        if not rows:
            return
        ids, embs, has = zip(*rows)
        X = np.frombuffer(b"".join(embs), dtype=np.float32).reshape(len(rows), self.dim)
        self._reserve(len(rows))
        self._set_rows(slice(0, len(rows)), X)
        self._has_doc[: len(rows)] = has
        self._ids = list(ids)
        self._slot = {doc_id: i for i, doc_id in enumerate(self._ids)}
        self._n = len(rows)
        self.logger.info("loaded %d Documents of dimension %d from %s", self._n, self.dim, self.workspace)

    def _documents(self, slots: np.ndarray) -> dict[int, Document]:
        """Slot -> stored Document (with a copy of its embedding), one SQLite query per 500 ids."""
        out: dict[int, Document] = {}
        stored: list[int] = []
        vecs = self._A[slots, : self.dim]
        for s, vec in zip(slots.tolist(), vecs):
            if self._has_doc[s]:
                stored.append(s)
            out[s] = Document(id=self._ids[s], embedding=vec)
        for i in range(0, len(stored), 500):
            part = stored[i:i + 500]
            ids = [self._ids[s] for s in part]
            found = dict(self._db.execute(f"SELECT id, doc FROM docs WHERE id IN ({','.join('?' * len(ids))})",
                                          ids).fetchall())
            for s, doc_id in zip(part, ids):
                out[s] = _deserialise(doc_id, found[doc_id], out[s]._embedding)
        return out

    def close(self) -> None:
        db, self._db = getattr(self, "_db", None), None
        if db is not None:
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()


# ---------------------------------------------------------------------- helpers
def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _some(ids: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:n])
    return f"[{shown}{', ...' if len(ids) > n else ''}]"


def _row_bytes(X: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in X]


def _serialise(doc: Document) -> str | None:
    """The stored form of a Document without its id and embedding (None when there is nothing else)."""
    out: dict[str, Any] = {}
    for name in ("text", "uri", "mime_type"):
        v = getattr(doc, name)
        if v is not None:
            out[name] = v
    if doc._tags:
        out["tags"] = doc._tags
    if doc.buffer is not None:
        out["buffer"] = base64.b64encode(doc.buffer).decode("ascii")
    if doc._blob is not None:
        b = np.ascontiguousarray(doc._blob)
        out["blob"] = {"dtype": b.dtype.str, "shape": list(b.shape), "data": base64.b64encode(b.tobytes()).decode()}
    if doc._chunks:
        out["chunks"] = [c.to_dict() for c in doc._chunks]
    if doc._matches:
        out["matches"] = [m.to_dict() for m in doc._matches]
    if doc._scores:
        out["scores"] = doc._scores
    if not out:
        return None
    try:
        return json.dumps(out, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadDocument(f"cannot be stored: its fields must be JSON-serialisable ({exc})", doc.id) from exc


def _deserialise(doc_id: str, text: str, embedding: np.ndarray | None) -> Document:
    data = json.loads(text)
    blob = data.pop("blob", None)
    buf = data.pop("buffer", None)
    chunks = [Document.from_dict(c) for c in data.pop("chunks", None) or ()]
    matches = [Document.from_dict(m) for m in data.pop("matches", None) or ()]
    doc = Document(id=doc_id, embedding=embedding, chunks=chunks, matches=matches,
                   buffer=base64.b64decode(buf) if buf is not None else None, **data)
    if blob is not None:
        doc.blob = np.frombuffer(base64.b64decode(blob["data"]), dtype=np.dtype(blob["dtype"])).reshape(
            blob["shape"]).copy()
    return doc

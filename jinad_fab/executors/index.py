"""``_index``: the built-in Executor that stores Documents and finds their nearest neighbours.

Endpoints: ``/index`` (create), ``/search``, ``/update`` (replace by id), ``/delete`` (by id).

Storage, in the Executor's workspace (one per shard):

* ``index.sqlite`` (SQLite, WAL): every Document by ``slot`` (its row in the vector file) and ``id``,
  with its other fields as JSON; the dimension; a journal of in-place vector writes. SQLite has no
  index on the id: an id -> slot hash map in memory (:mod:`.index_ids`, built from the ids at the first
  write or lookup by id after a start) finds slots and keeps ids unique;
* ``vectors.f32``: row ``i`` is the float32 embedding of the Document in slot ``i``;
* ``norms.f32``: ``|x|²`` of row ``i``.

Both vector files are memory-mapped read-only and written with ``pwrite``: opening an index reads
no vector, so an index larger than the RAM opens at once and the page cache holds what searches touch.
Nothing about a Document is kept per vector in Python objects (ids come from SQLite by slot), which
keeps memory at the vectors' own size plus 4 bytes, and 12-20 bytes of id map.

Search engines (``engine``): ``faiss`` (the ``faiss-cpu`` package, the default when it is installed)
or ``numpy`` (the fallback). Both are exact for the default ``index: flat``:

* faiss: ``knn_L2sqr`` (with the stored norms) or ``knn_inner_product`` straight on the mapped file,
  for batches large enough for faiss to multiply them as matrices (its
  ``distance_compute_blas_threshold``: 1,000 queries of 128 dimensions); the queries are cut into one
  part per thread, each searched among all rows and scored by a single-threaded worker (or, for a
  batch too small to cut, the rows, and the parts' candidates merged). Smaller
  batches go through the numpy engine's one matrix product, faster there than faiss's per-query path;
* numpy: a float32 BLAS product per block of queries x block of rows that keeps only the maximum of
  each *group* of rows (rows ``j, j + m, j + 2m, ...`` of a block), then looks at the rows of the
  best groups only. That is exact: the ``c`` best group maxima are ``c`` rows that all score at least
  the ``c``-th best group maximum, and every row of any other group scores at most that, so the true
  top-c lies in the chosen groups. Cosine always runs here (faiss cannot scale rows by 1/|x|).

Both engines propose a few more candidates than asked (``top_k + max(top_k, 8)``); their scores are
recomputed in float64 from the raw vectors and sorted by (score, slot), so a Document's euclidean
distance to itself is exactly 0 and float32 rounding cannot reorder the answer.

Approximate search (``index: ivf`` or ``index: hnsw``, faiss only) for indexes past a few million
vectors: an ``IVF{nlist},SQ8`` or ``HNSW{hnsw_m},SQ8`` faiss index (one byte per dimension) proposes
``top_k * rerank`` candidates, rescored exactly from the vector file as above. It is built in memory
at the first search (training on a sample), extended by later ``/index`` requests and rebuilt after
``/update`` or ``/delete``; it is saved beside the store (``ann-*.faiss``, named by what it was built
from) when built and on close, so a restart reads it instead of training again; below ``ann_min`` vectors, and for a metric other than the index's own,
search stays exact. ``nprobe`` / ``ef_search`` can be given per request in ``parameters``.

Scores (``match.scores[metric]``) and their order:

* ``euclidean`` (default): the distance, ascending;
* ``cosine``: the cosine *distance* ``1 - cos``, ascending;
* ``inner_product``: the similarity ``q·x``, descending.

The search handler sets ``header["merge"]`` so that the answers of several shards are re-ranked
by the same score and cut to ``top_k`` (see :mod:`jinad_fab.runtime.merge`). Ties are broken by
storage position (insertion order, until deletions move rows: a deleted slot takes the last row).

Crash safety: every request is one SQLite transaction. New rows are written to the vector files
(past the stored count, and fsynced with ``durability: full``) before the transaction that makes them
count commits; rows overwritten in place (``/update`` with an embedding, the moves of ``/delete``) are
written into the journal table in that same transaction and applied after it, and again on the next
start. A crash leaves the state either before or after the request.

Replicas (``parallel > 1``) of a shard share its store (see :mod:`.index_storage`): any replica may
take any request. A write holds the shard's lock exclusively; a search holds it shared and first
catches up with what other replicas committed (SQLite's ``data_version`` tells it, at the cost of
one ``PRAGMA``), so every replica answers exactly as soon as a write has returned, and a replica
started later opens everything written before it.

Dumps: ``/dump`` with ``parameters={"path": ...}`` writes a consistent copy of each shard into
``<path>/<shard id>`` and answers one Document per shard (``tags``: ``shard_id``, ``shards``,
``count``, ``dim``, ``path``, ``dump_id``). ``dump_path`` (in ``uses_with`` or the Pod option of the
same name) makes a starting replica replace its shard's store with that shard's part of the dump,
once: a replica restarted with the same ``dump_path`` keeps what was written since.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import math
import mmap
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from ..document import Document, DocumentArray
from ..errors import BadConfig, BadDocument, BadInput
from . import index_storage as storage
from .base import Executor, requests
from .index_ids import IdMap, id_hashes
from .loader import resolve_path

__all__ = ["IndexExecutor", "METRICS", "ENGINES", "INDEX_KINDS"]

# metric -> ascending? (True: smaller is closer)
METRICS: dict[str, bool] = {"euclidean": True, "cosine": True, "inner_product": False}
ENGINES = ("auto", "faiss", "numpy")
INDEX_KINDS = ("flat", "ivf", "hnsw")
_SCHEMA_VERSION = "3"
_DURABILITY = ("full", "normal")
_ROW_ALIGN = 32  # capacity is kept a multiple of the group size
_FEW_QUERIES = 8  # up to this many queries, one numpy product beats faiss's per-query path
_SCRATCH = 1 << 20  # floats (4 MB): the largest temporary array a search makes; bigger ones, once freed,
# stay in the process (glibc then serves that size from its heap, which it rarely gives back)
_PART_MIN_ROWS = 16384  # a batched faiss search splits the rows into parts of at least this many
_PART_MIN_QUERIES = 256  # ... or, given this many queries per thread, the queries (nothing to merge)
_SQL_CHUNK = 500
_SQLITE_CACHE_KB = 512
_WAL_CHECKPOINT_PAGES = 8192  # about 32 MB of WAL between checkpoints


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class _RowFile:
    """A file of fixed-width float32 rows: written with pwrite, read through a read-only mapping."""

    def __init__(self, path: str, width: int, fresh: bool):
        self.path, self.width, self.rowbytes = path, width, 4 * width
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if fresh:
            os.ftruncate(self.fd, 0)
        self.cap = os.fstat(self.fd).st_size // self.rowbytes
        self._map()

    def _map(self) -> None:
        if self.cap == 0:
            self.rows = np.zeros((0, self.width), dtype=np.float32)
            return
        mm = mmap.mmap(self.fd, self.cap * self.rowbytes, prot=mmap.PROT_READ)
        self.rows = np.frombuffer(mm, dtype=np.float32).reshape(self.cap, self.width)

    def refresh(self) -> None:
        """Map the rows another replica appended (the file only grows while its dimension holds)."""
        cap = os.fstat(self.fd).st_size // self.rowbytes
        if cap != self.cap:
            self.cap = cap
            self._map()

    def reserve(self, n: int) -> None:
        if n <= self.cap:
            return
        cap = max(n, int(self.cap * 1.5), 1024)
        cap = -(-cap // _ROW_ALIGN) * _ROW_ALIGN
        os.ftruncate(self.fd, cap * self.rowbytes)  # sparse: no disk used until written
        self.cap = cap
        self._map()

    def write(self, start: int, X: np.ndarray) -> None:
        X = np.ascontiguousarray(X, dtype=np.float32)
        view, off, done = memoryview(X).cast("B"), start * self.rowbytes, 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], off + done)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        self.rows = np.zeros((0, self.width), dtype=np.float32)
        os.close(self.fd)


def _reads(fn):
    """Run under the shard's shared lock, after catching up with other replicas' writes."""
    @functools.wraps(fn)
    def reading(self, *args, **kwargs):
        with self._lock.shared() as outer:
            if outer:
                self._follow()
            return fn(self, *args, **kwargs)
    return reading


def _writes(fn):
    """Run under the shard's exclusive lock, after catching up with other replicas' writes."""
    @functools.wraps(fn)
    def writing(self, *args, **kwargs):
        with self._lock.exclusive() as outer:
            if outer:
                self._follow()
            return fn(self, *args, **kwargs)
    return writing


class IndexExecutor(Executor):
    """Stores Documents with their embeddings; top-k search by euclidean, cosine or inner product.

    ``uses_with``: ``dim`` (fixed by the first indexed Document when not given), ``metric``
    (default ``euclidean``), ``top_k`` (default 10), ``durability`` (``full``: fsync every
    request, the default; ``normal``: survives a crash of the process, not of the machine),
    ``engine`` (``auto``: faiss when installed, else numpy), ``index`` (``flat``: exact, the default;
    ``ivf`` / ``hnsw``: approximate, with ``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``,
    ``ef_construction``, ``rerank``, ``ann_min``), ``query_block`` / ``row_block`` / ``group_size``
    (the numpy engine's tiling, rarely worth changing), ``dump_path`` (load this shard's part of a
    dump written by ``/dump`` when starting; the Pod option ``dump_path`` does the same).
    """

    loads_dumps = True  # takes the Pod option dump_path

    def __init__(self, dim: int | None = None, metric: str = "euclidean", top_k: int = 10,
                 durability: str = "full", engine: str = "auto", index: str = "flat",
                 nlist: int | None = None, nprobe: int = 16, hnsw_m: int = 32, ef_search: int = 64,
                 ef_construction: int = 64, rerank: int = 4, ann_min: int = 20000,
                 query_block: int = 512, row_block: int = 16384, group_size: int = 32,
                 dump_path: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if dim is not None and (not _is_int(dim) or dim < 1):
            raise BadConfig(f"_index: dim must be a positive integer, got {dim!r}")
        if metric not in METRICS:
            raise BadConfig(f"_index: unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if not _is_int(top_k) or top_k < 1:
            raise BadConfig(f"_index: top_k must be a positive integer, got {top_k!r}")
        if durability not in _DURABILITY:
            raise BadConfig(f"_index: durability must be one of {_DURABILITY}, got {durability!r}")
        if engine not in ENGINES:
            raise BadConfig(f"_index: engine must be one of {ENGINES}, got {engine!r}")
        if index not in INDEX_KINDS:
            raise BadConfig(f"_index: index must be one of {INDEX_KINDS}, got {index!r}")
        for name, v in (("query_block", query_block), ("row_block", row_block), ("group_size", group_size),
                        ("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search),
                        ("ef_construction", ef_construction), ("rerank", rerank),
                        ("nlist", 1 if nlist is None else nlist)):
            if not _is_int(v) or v < 1:
                raise BadConfig(f"_index: {name} must be a positive integer, got {v!r}")
        if not _is_int(ann_min) or ann_min < 0:
            raise BadConfig(f"_index: ann_min must be a non-negative integer, got {ann_min!r}")
        if row_block % group_size or _ROW_ALIGN % group_size:
            raise BadConfig(f"_index: row_block must be a multiple of group_size, and group_size must "
                            f"divide {_ROW_ALIGN}")
        pod_dump = self.runtime_args.get("dump_path")
        if dump_path is not None and pod_dump is not None and dump_path != pod_dump:
            raise BadConfig(f"_index: dump_path given twice, as {dump_path!r} (uses_with) and {pod_dump!r} "
                            "(the Pod option); give one")
        dump_path = dump_path if dump_path is not None else pod_dump
        if dump_path is not None and (not isinstance(dump_path, str) or not dump_path):
            raise BadConfig(f"_index: dump_path must be a directory path, got {dump_path!r}")
        faiss = _faiss()
        if engine == "faiss" and faiss is None:
            raise BadConfig("_index: engine 'faiss' needs the faiss-cpu package (pip install 'jinad-fab[faiss]')")
        if index != "flat" and (engine == "numpy" or faiss is None):
            raise BadConfig(f"_index: index {index!r} is approximate search through faiss; install "
                            f"faiss-cpu (pip install 'jinad-fab[faiss]') and do not force engine 'numpy'")
        self.engine = "numpy" if engine == "numpy" or faiss is None else "faiss"
        self._faiss = faiss if self.engine == "faiss" else None
        self.kind = index
        self.metric = metric
        self.default_top_k = int(top_k)
        self._sync_writes = durability == "full"
        self._ann_cfg = {"nlist": nlist, "nprobe": int(nprobe), "hnsw_m": int(hnsw_m), "ef_search": int(ef_search),
                         "ef_construction": int(ef_construction), "rerank": int(rerank), "ann_min": int(ann_min)}
        self._qb, self._rb, self._gs = int(query_block), int(row_block), int(group_size)
        self._dim_given: int | None = int(dim) if dim is not None else None
        self.dim = self._dim_given
        self._durability = durability
        self._n = 0
        self._vec: _RowFile | None = None
        self._norm: _RowFile | None = None
        self._cache: dict[str, Any] = {}  # derived arrays and the id list, dropped on every change
        self._syncer: ThreadPoolExecutor | None = None
        self._searchers: ThreadPoolExecutor | None = None
        self._ids: IdMap | None = None  # id -> slot, built from SQLite when first needed
        self._searcher_count = 0
        self._ann: Any = None
        self._ann_rows = 0
        self._ann_saved: int | None = None  # rows of the approximate index as saved, None: not saved
        self._db: sqlite3.Connection | None = None
        self._home = self.workspace  # the shard's: every replica of it opens the same
        sid = self.runtime_args.get("shard_id")
        self.shard_id = int(sid) if sid is not None else 0
        self.shards = int(self.runtime_args.get("shards") or 1)
        self._lock = storage.ShardLock(os.path.join(self._home, "index.lock"))
        try:
            copy = self._copy_dump(dump_path) if dump_path is not None else None
            with self._lock.exclusive():  # one replica at a time creates, migrates or replaces the store
                if copy is not None and storage.install_dump(self._home, *copy):
                    self.logger.info("loaded the dump of shard %d from %s (%s Documents)", self.shard_id,
                                     dump_path, copy[1].get("count"))
                self._open_store()
        except BaseException:
            self._close_store()
            self._lock.close()
            raise

    # ------------------------------------------------------------------ endpoints
    @requests(on="/index")
    @_writes
    def index(self, docs: DocumentArray) -> None:
        if not docs:
            return
        ids = docs.ids
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                raise BadDocument("appears twice in one /index request", i)
            seen.add(i)
        X = self._embeddings(docs, required=True)
        self.add(ids, X, [_serialise(d) for d in docs])

    @requests(on="/update")
    @_writes
    def update(self, docs: DocumentArray) -> None:
        if not docs:
            return
        self._require_known(docs.ids, "updated")
        X = self._embeddings(docs, required=False)
        rows = [(d.id, None if X is None or d._embedding is None else i) for i, d in enumerate(docs)]
        self.replace(rows, X, [_serialise(d) for d in docs])

    @requests(on="/delete")
    @_writes
    def delete(self, docs: DocumentArray) -> None:
        if docs:
            self.remove(docs.ids)

    @requests(on="/dump", idempotent=True)  # a second run replaces the first dump whole
    def dump(self, parameters: dict) -> DocumentArray:
        """Write this shard's dump into ``parameters["path"]/<shard id>``; answer one Document whose
        tags say what was written (the request's own Documents are not kept)."""
        path = parameters.get("path")
        if not isinstance(path, str) or not path:
            raise BadInput(f"/dump needs parameters={{'path': <directory>}}, got path={path!r}")
        summary = self.dump_to(os.path.abspath(resolve_path(path, None, "dump path")))
        return DocumentArray([Document(id=f"dump/shard-{self.shard_id}", tags=summary)])

    @requests(on="/search")
    @_reads
    def search(self, docs: DocumentArray, parameters: dict, header: dict) -> None:
        top_k = parameters.get("top_k", self.default_top_k)
        metric = parameters.get("metric", self.metric)
        if not _is_int(top_k) or top_k < 1:
            raise BadInput(f"top_k must be a positive integer, got {top_k!r} (request with Documents "
                           f"{_some(docs.ids)})")
        if metric not in METRICS:
            raise BadInput(f"unknown metric {metric!r}; known: {', '.join(METRICS)} (request with Documents "
                           f"{_some(docs.ids)})")
        tuning = {}
        for name in ("nprobe", "ef_search"):
            v = parameters.get(name)
            if v is not None:
                if not _is_int(v) or v < 1:
                    raise BadInput(f"{name} must be a positive integer, got {v!r}")
                tuning[name] = int(v)
        header["merge"] = {"score": metric, "ascending": METRICS[metric], "top_k": int(top_k)}
        if not docs:
            return
        Q = self._embeddings(docs, required=True, what="query")
        if self._n == 0:
            for d in docs:
                d.matches = None
            return
        slots, scores = self.search_vectors(Q, int(top_k), metric, **tuning)
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
    @_reads
    def __len__(self) -> int:
        return self._n

    @property
    @_reads
    def ids(self) -> list[str]:
        """Ids in slot order (read from SQLite once per change)."""
        ids = self._cache.get("ids")
        if ids is None:
            ids = self._cache["ids"] = [r[0] for r in self._db.execute("SELECT id FROM docs ORDER BY slot")]
        return list(ids)

    @_reads
    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(self._slots_of([doc_id]))

    @property
    @_reads
    def nbytes(self) -> int:
        """Bytes the search reads per pass: the stored vectors and norms (plus an approximate index)."""
        if self._vec is None:
            return 0
        ann = 0
        if self._ann is not None:
            ann = self._ann_rows * (getattr(self._ann, "code_size", 0) + 8)
        return self._n * (self._vec.rowbytes + 4) + ann

    @_writes
    def add(self, ids: Sequence[str], X: np.ndarray, docs: Sequence[str | None] | None = None) -> None:
        """Append vectors (and serialised Documents) under new ids: files first, then one transaction."""
        X = self._check_matrix(X, ids)
        ids = list(ids)
        hashes = id_hashes(ids)
        stored = self._slots_of(ids, hashes)
        if stored:
            raise BadDocument("is already indexed; use /update to replace it", next(iter(stored)))
        if len(np.unique(hashes)) < len(ids) and len(set(ids)) < len(ids):  # (equal hashes: perhaps twice)
            twice = next(i for i, c in Counter(ids).items() if c > 1)
            raise BadDocument("appears twice in one /index request", twice)
        payload = docs if docs is not None else [None] * len(ids)
        first = self.dim is None
        if first or self._vec is None:  # (a store with a dimension keeps its files: replicas map them)
            self._open_files(X.shape[1], fresh=first)
        start, m = self._n, len(ids)
        norms = np.einsum("ij,ij->i", X, X)[:, None]
        self._vec.reserve(start + m)
        self._norm.reserve(start + m)
        self._vec.write(start, X)  # past the stored count: invisible until the transaction commits
        self._norm.write(start, norms)
        # durability full: the new rows reach the disk before the commit that makes them count; the
        # fsyncs run in a thread while SQLite inserts, and the commit waits for them
        syncing = self._sync_in_background() if self._sync_writes else None
        try:
            with self._db:  # the first Documents also fix the dimension, in the same transaction
                if first:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(X.shape[1]),))
                if docs is not None and any(payload):  # (a stored form is never '')
                    rows = json.dumps([[i, p] for i, p in zip(ids, payload)], ensure_ascii=False)
                    self._db.execute("INSERT INTO docs (slot, id, doc) SELECT ? + key, json_extract(value, '$[0]'), "
                                     "json_extract(value, '$[1]') FROM json_each(?)", (start, rows))
                else:  # one statement over a JSON array: several times faster than executemany
                    self._db.execute("INSERT INTO docs (slot, id) SELECT ? + key, value FROM json_each(?)",
                                     (start, json.dumps(list(ids), ensure_ascii=False)))
                if syncing is not None:
                    syncing.result()  # raises the fsync's error, which rolls the transaction back
        finally:
            if syncing is not None:
                wait([syncing])  # never leave an fsync running past the request
        self.dim = X.shape[1]
        self._n += m
        self._changed(appended=True)
        self._ids_changed(lambda ids_map: ids_map.append(hashes))

    @_writes
    def replace(self, rows: Sequence[tuple[str, int | None]], X: np.ndarray | None,
                docs: Sequence[str | None]) -> None:
        """Replace stored Documents; ``rows`` pairs each id with its row in X (None: keep the vector)."""
        slot_of = self._require_known([doc_id for doc_id, _ in rows], "updated")
        with_vec = [(doc_id, r) for doc_id, r in rows if r is not None]
        moves: dict[int, np.ndarray] = {}
        if with_vec:
            X = self._check_matrix(X[[r for _, r in with_vec]], [doc_id for doc_id, _ in with_vec])
            for (doc_id, _), x in zip(with_vec, X):
                moves[slot_of[doc_id]] = x
        with self._db:
            self._begin_moves(moves, rewrites=bool(moves))
            self._db.executemany("UPDATE docs SET doc = ? WHERE slot = ?",
                                 zip(docs, (slot_of[doc_id] for doc_id, _ in rows)))
        self._apply_moves(moves)
        self._changed(appended=not moves)

    @_writes
    def remove(self, ids: Sequence[str]) -> None:
        """Delete by ids; every id must be stored (nothing is deleted otherwise).

        The last row moves into each freed slot, so the files stay packed."""
        ids = list(dict.fromkeys(ids))
        slot_of = self._require_known(ids, "deleted")
        id_at = {slot: doc_id for doc_id, slot in slot_of.items()}
        moves: dict[int, np.ndarray] = {}
        freed: list[tuple[int, int]] = []
        n = self._n
        with self._db:
            db = self._db
            for doc_id in ids:
                slot, last = slot_of[doc_id], n - 1
                del id_at[slot]
                db.execute("DELETE FROM docs WHERE slot = ?", (slot,))
                if slot != last:
                    db.execute("UPDATE docs SET slot = ? WHERE slot = ?", (slot, last))
                    moved = moves.pop(last, None)
                    moves[slot] = self._vec.rows[last].copy() if moved is None else moved
                    moved_id = id_at.pop(last, None)  # one of the ids still to delete: it is in slot now
                    if moved_id is not None:
                        slot_of[moved_id], id_at[slot] = slot, moved_id
                else:
                    moves.pop(last, None)
                freed.append((slot, last))
                n = last
            self._begin_moves(moves, rewrites=True)
        self._n = n
        self._apply_moves(moves)
        self._changed(appended=False)

        def forget(ids_map: IdMap) -> None:
            for slot, last in freed:
                ids_map.delete(slot, last)
        self._ids_changed(forget)

    @_reads
    def dump_to(self, path: str) -> dict[str, Any]:
        """Write a consistent copy of this shard into ``<path>/<shard id>`` (replacing an older dump
        there as a whole); the shared lock keeps every replica's writes out while it copies."""
        n, dim = self._n, self.dim
        manifest = storage.new_manifest(self.shard_id, self.shards, n, dim)
        if self._vec is None:
            vectors, norms = np.zeros((0, dim or 0), dtype=np.float32), np.zeros((0, 1), dtype=np.float32)
        else:
            vectors, norms = self._vec.rows[:n], self._norm.rows[:n]
        dest = os.path.join(path, str(self.shard_id))
        ann = []
        if self.kind != "flat":
            self._ann_save()  # with every row it holds, so a store loaded from the dump need not train it
            ann = [os.path.join(self._dir, name) for rows, name in self._ann_files() if 0 < rows <= n][-1:]
        storage.write_dump(self._db, vectors, norms, dest, manifest, extra=ann)
        self.logger.info("dumped %d Documents of shard %d into %s", n, self.shard_id, dest)
        return {"shard_id": self.shard_id, "shards": self.shards, "count": n, "dim": dim, "path": dest,
                "dump_id": manifest["id"]}

    @_reads
    def vectors(self) -> np.ndarray:
        """The stored embeddings in slot order (a read-only view of the mapped file)."""
        if self._vec is None:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return self._vec.rows[: self._n]

    @_reads
    def search_vectors(self, Q: np.ndarray, top_k: int, metric: str | None = None, *,
                       nprobe: int | None = None, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k: (slots, scores), both (len(Q), min(top_k, len(self))), best first.

        Exact unless the index is approximate (``index: ivf|hnsw``) and holds at least ``ann_min`` vectors."""
        metric = metric or self.metric
        if metric not in METRICS:
            raise BadInput(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        if Q.ndim != 2 or (self.dim is not None and Q.shape[1] != self.dim):
            raise BadInput(f"queries must be a (n, {self.dim}) matrix, got shape {Q.shape}")
        n = self._n
        k = min(int(top_k), n)
        nq = len(Q)
        if k == 0 or nq == 0:
            return np.zeros((nq, 0), dtype=np.int64), np.zeros((nq, 0), dtype=np.float64)
        if self.kind != "flat" and metric == self.metric and n >= self._ann_cfg["ann_min"]:
            cand = self._ann_candidates(Q, k, metric, nprobe, ef_search)
            slots, scores = self._rescore(Q, cand, k, metric)
            lost = np.flatnonzero((slots < 0).any(axis=1))  # the graph or lists gave too few: go exact
            if len(lost):
                slots[lost], scores[lost] = self._exact(Q[lost], k, metric)
            return slots, scores
        return self._exact(Q, k, metric)

    # ------------------------------------------------------------------ search internals
    def _exact(self, Q: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        kc = min(self._n, k + max(k, 8))
        if self._faiss is not None and metric != "cosine" and self._faiss_batches(len(Q)):
            parts = min(self._faiss.omp_get_max_threads(), len(Q) // _PART_MIN_QUERIES)
            if parts > 1 and self._faiss_batches(len(Q) // parts):
                return self._split_queries(Q, kc, k, metric, parts)
            cand = self._faiss_candidates(Q, kc, metric)
        else:
            cand = np.empty((len(Q), kc), dtype=np.int64)
            Qs = _unit_rows(Q) if metric == "cosine" else Q
            qb = min(self._qb, max(_FEW_QUERIES + 1, _SCRATCH // self._rb))  # a block of scores within _SCRATCH
            for q0 in range(0, len(Q), qb):
                Qc = Qs[q0:q0 + qb]
                cand[q0:q0 + len(Qc)] = self._numpy_candidates(Qc, kc, metric)
        return self._rescore(Q, cand, k, metric)

    def _faiss_batches(self, nq: int) -> bool:
        """faiss takes batches it multiplies as matrices (BLAS); below its threshold it compares the
        queries one by one, and the numpy engine's single matrix product is faster there."""
        if nq <= _FEW_QUERIES:
            return False
        threshold = getattr(self._faiss.cvar, "distance_compute_blas_threshold", 0)
        return nq * self.dim >= threshold

    def _faiss_candidates(self, Q: np.ndarray, kc: int, metric: str) -> np.ndarray:
        """The kc best slots of each query (any order), from faiss's exact k-NN on the mapped rows.

        With several threads the rows are cut into one part per thread, each searched by a worker
        whose faiss and BLAS run single-threaded, and the parts' candidates merged: one join per call.
        faiss alone parallelises every block of 1,024 rows (a BLAS product, then its heaps), ~200
        joins per 100k rows; on a busy machine each join waits for the thread that lost its core."""
        V, norms = self._flat_rows(metric)
        n = len(V)
        parts = min(self._faiss.omp_get_max_threads(), n // _PART_MIN_ROWS)
        if parts <= 1:
            return _faiss_knn(self._faiss, Q, V, norms, kc, metric)[1]

        def part(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            return _faiss_knn(self._faiss, Q, V[a:b], None if norms is None else norms[a:b], min(kc, b - a), metric)

        found = self._in_parts(n, parts, part)
        D = np.hstack([d for _, (d, _) in found])
        Idx = np.hstack([i + a for a, (_, i) in found])
        best = np.argpartition(D if metric == "euclidean" else -D, kc - 1, axis=1)[:, :kc]
        return np.take_along_axis(Idx, best, axis=1)

    def _split_queries(self, Q: np.ndarray, kc: int, k: int, metric: str, parts: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch of many queries cut into one part per thread: each worker finds its queries'
        candidates among all rows (faiss, single-threaded) and scores them, so nothing is merged
        and the float64 scoring runs in parallel too (cut by rows instead, it ran after the join)."""
        V, norms = self._flat_rows(metric)
        faiss = self._faiss

        def part(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            return self._rescore(Q[a:b], _faiss_knn(faiss, Q[a:b], V, norms, kc, metric)[1], k, metric)

        found = self._in_parts(len(Q), parts, part)
        return np.vstack([s for _, (s, _) in found]), np.vstack([d for _, (_, d) in found])

    def _flat_rows(self, metric: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The mapped rows in use, and their squared norms where faiss's L2 takes them."""
        n = self._n
        return self._vec.rows[:n], (self._norm.rows[:n, 0] if metric == "euclidean" else None)

    def _in_parts(self, total: int, parts: int, work) -> list[tuple[int, Any]]:
        """``work(a, b)`` on ``parts`` even cuts of ``range(total)``, one per search worker:
        ``(a, result)`` in order, once every worker is done with the mapped rows (even on an error)."""
        pool = self._search_pool(parts)
        bounds = [total * i // parts for i in range(parts + 1)]
        futures = [pool.submit(work, a, b) for a, b in zip(bounds, bounds[1:])]
        wait(futures)
        return [(a, f.result()) for a, f in zip(bounds, futures)]

    def _search_pool(self, threads: int) -> ThreadPoolExecutor:
        if self._searchers is None or self._searcher_count < threads:
            if self._searchers is not None:
                self._searchers.shutdown()
            self._searchers = ThreadPoolExecutor(threads, thread_name_prefix="index-search",
                                                 initializer=self._faiss.omp_set_num_threads, initargs=(1,))
            self._searcher_count = threads
        return self._searchers

    def _bias_scale(self, metric: str, rows: slice | np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """What turns q·x into a score to maximise for these rows: euclidean adds -|x|²/2, cosine
        scales by 1/|x|. Computed per block from the mapped norms (no array of n kept between searches)."""
        if metric == "inner_product":
            return None, None
        sq = self._norm.rows[rows, 0]
        if metric == "euclidean":
            return -0.5 * sq, None
        return None, np.divide(1.0, np.sqrt(sq), out=np.zeros_like(sq), where=sq > 0)

    def _numpy_candidates(self, Qc: np.ndarray, kc: int, metric: str) -> np.ndarray:
        """The kc best slots of each query (any order), exact in float32."""
        n, gs = self._n, self._gs
        V = self._vec.rows
        m = len(Qc)
        if n <= 8192 or 4 * kc * gs > n or m <= _FEW_QUERIES:  # few rows, few queries or a huge k: every row
            bias, scale = self._bias_scale(metric, slice(0, n))
            out = np.empty((m, kc), dtype=np.int64)
            step = max(1, _SCRATCH // n)
            for r0 in range(0, m, step):
                s = Qc[r0:r0 + step] @ V[:n].T
                if bias is not None:
                    s += bias
                if scale is not None:
                    s *= scale
                out[r0:r0 + step] = np.argpartition(-s, kc - 1, axis=1)[:, :kc] if kc < n else np.arange(n)
            return out
        rb = max(self._rb, _SCRATCH // m // self._rb * self._rb)  # few queries: bigger blocks, fewer BLAS calls
        groups_per_block = rb // gs
        n_padded = -(-n // gs) * gs
        G = np.empty((m, n_padded // gs), dtype=np.float32)
        S = np.empty(m * min(rb, n_padded), dtype=np.float32)
        for b0 in range(0, n_padded, rb):
            width = min(rb, n_padded - b0)
            real = min(width, n - b0)
            s = S[: m * width].reshape(m, width)  # contiguous, so BLAS writes it directly
            np.matmul(Qc, V[b0:b0 + real].T, out=s[:, :real])
            bias, scale = self._bias_scale(metric, slice(b0, b0 + real))
            if bias is not None:
                s[:, :real] += bias
            if scale is not None:
                s[:, :real] *= scale
            if real < width:  # padding rows of the last block never win
                s[:, real:] = -np.inf
            np.max(s.reshape(m, gs, width // gs), axis=1, out=G[:, b0 // gs:(b0 + width) // gs])
        best = np.argpartition(G, G.shape[1] - kc, axis=1)[:, G.shape[1] - kc:]
        block = best // groups_per_block
        b0 = block * rb
        stride = np.minimum(rb, n_padded - b0) // gs  # groups in that block = stride between a group's rows
        first = b0 + (best - block * groups_per_block)
        cand = (first[:, :, None] + np.arange(gs)[None, None, :] * stride[:, :, None]).reshape(m, -1)
        # every group has a real row first, so padding rows (scored -inf) never make the top
        padding = cand >= n
        np.minimum(cand, n - 1, out=cand)
        cs = np.empty(cand.shape, dtype=np.float32)
        step = max(1, _SCRATCH // (cand.shape[1] * V.shape[1]))  # the candidates' rows, gathered per few queries
        for q0 in range(0, m, step):
            cs[q0:q0 + step] = np.einsum("qd,qcd->qc", Qc[q0:q0 + step], V[cand[q0:q0 + step]])
        bias, scale = self._bias_scale(metric, cand)
        if bias is not None:
            cs += bias
        if scale is not None:
            cs *= scale
        cs[padding] = -np.inf
        top = np.argpartition(-cs, kc - 1, axis=1)[:, :kc]
        return np.take_along_axis(cand, top, axis=1)

    def _rescore(self, Q: np.ndarray, cand: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores of the candidates in float64 from the raw vectors; the best k by (score, slot).

        Candidates < 0 (none found) score worst and stay < 0 in the answer."""
        missing = cand < 0
        rows = np.where(missing, 0, cand)
        scores = np.empty(cand.shape, dtype=np.float64)
        V = self._vec.rows
        # in blocks of queries, so the float64 temporaries stay in the CPU's cache
        step = max(1, (1 << 15) // max(1, cand.shape[1] * Q.shape[1]))
        for q0 in range(0, len(Q), step):
            X = V[rows[q0:q0 + step]]  # (b, c, d) float32: a few rows per query
            q = Q[q0:q0 + step].astype(np.float64)
            if metric == "euclidean":
                diff = np.subtract(X, q[:, None, :], dtype=np.float64)  # float64 from the float32 rows
                np.sqrt(np.einsum("qcd,qcd->qc", diff, diff), out=scores[q0:q0 + step])
                continue
            X = X.astype(np.float64)
            dots = np.einsum("qcd,qd->qc", X, q)
            if metric == "inner_product":
                scores[q0:q0 + step] = dots
            else:
                nx = np.sqrt(np.einsum("qcd,qcd->qc", X, X))
                denom = nx * np.linalg.norm(q, axis=1)[:, None]
                cos = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
                scores[q0:q0 + step] = 1.0 - cos
        key = scores if METRICS[metric] else -scores
        key[missing] = np.inf
        order = np.lexsort((cand, key), axis=-1)[:, :k]  # by score, then by slot for ties
        slots = np.take_along_axis(cand, order, axis=1)
        return slots, np.take_along_axis(scores, order, axis=1)

    # ------------------------------------------------------------------ approximate search
    def _ann_candidates(self, Q: np.ndarray, k: int, metric: str, nprobe: int | None,
                        ef_search: int | None) -> np.ndarray:
        faiss, cfg = self._faiss, self._ann_cfg
        self._ann_sync(metric)
        kc = min(self._n, k * cfg["rerank"])
        Qs = _unit_rows(Q) if metric == "cosine" else Q
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=nprobe or cfg["nprobe"])
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(ef_search or cfg["ef_search"], kc))
        _, cand = self._ann.search(Qs, kc, params=params)
        return cand

    def _ann_sync(self, metric: str) -> None:
        """Build the approximate index on first use, then add the rows appended since."""
        faiss, cfg, n, d = self._faiss, self._ann_cfg, self._n, self.dim
        V = self._vec.rows
        fmetric = faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT

        def rows(a: int, b: int) -> np.ndarray:
            x = np.ascontiguousarray(V[a:b])
            return _unit_rows(x) if metric == "cosine" else x

        if self._ann is None:
            self._ann_load(metric)
        if self._ann is None:
            if self.kind == "ivf":
                nlist = cfg["nlist"] or max(16, min(65536, int(math.sqrt(n))))
                ann = faiss.index_factory(d, f"IVF{nlist},SQ8", fmetric)
                sample = 50 * nlist
            else:
                ann = faiss.index_factory(d, f"HNSW{cfg['hnsw_m']},SQ8", fmetric)
                ann.hnsw.efConstruction = cfg["ef_construction"]
                sample = 65536
            pick = np.sort(np.random.default_rng(0).choice(n, size=min(n, sample), replace=False))
            ann.train(rows(0, n)[pick] if metric == "cosine" else np.ascontiguousarray(V[pick]))
            self._ann, self._ann_rows = ann, 0
            self.logger.info("built an approximate %s index over %d vectors", self.kind, n)
        for a in range(self._ann_rows, n, 65536):  # HNSW numbers rows in add order: they are the slots
            b = min(n, a + 65536)
            if self.kind == "ivf":
                self._ann.add_with_ids(rows(a, b), np.arange(a, b, dtype=np.int64))
            else:
                self._ann.add(rows(a, b))
        self._ann_rows = n
        if self._ann_saved is None:  # built (or found stale) here: save it so a restart does not train again
            self._ann_save()

    # A saved approximate index is named by what it was built from: its kind, metric and build options,
    # the store's epoch (any change but an append) and the rows it holds, so a stale file is never used
    # and a file from before some appends is used for those rows. A replica that finds none builds its
    # own; files are written aside and renamed, so whichever replica saves last, every file is whole.
    def _ann_prefix(self) -> str:
        cfg = self._ann_cfg
        opts = (f"nlist{cfg['nlist'] or 'auto'}" if self.kind == "ivf"
                else f"m{cfg['hnsw_m']}-efc{cfg['ef_construction']}")
        return f"ann-{self.kind}-{self.metric}-{opts}-e{self._epoch or 0}-r"

    def _ann_files(self) -> list[tuple[int, str]]:
        prefix = self._ann_prefix()
        out = []
        for name in os.listdir(self._dir):
            if name.startswith("ann-") and name.endswith(".faiss"):
                rows = name[len(prefix):-len(".faiss")] if name.startswith(prefix) else ""
                out.append((int(rows) if rows.isdigit() else -1, name))
        return sorted(out)

    def _ann_load(self, metric: str) -> None:
        usable = [(r, name) for r, name in self._ann_files() if 0 < r <= self._n]
        if not usable:
            return
        rows, name = usable[-1]
        try:
            ann = self._faiss.read_index(os.path.join(self._dir, name))
        except (RuntimeError, OSError) as exc:  # removed by another replica meanwhile, or damaged
            self.logger.warning("could not read the saved approximate index %s (%s); building it again", name, exc)
            return
        if ann.ntotal != rows or ann.d != self.dim:
            return
        self._ann, self._ann_rows, self._ann_saved = ann, rows, rows
        self.logger.info("opened the saved approximate %s index over %d vectors", self.kind, rows)

    def _ann_save(self) -> None:
        """Write the approximate index beside the store (when it holds rows no saved file has)."""
        if self._ann is None or self._ann_rows == (self._ann_saved or 0) or self._db is None:
            return
        name = f"{self._ann_prefix()}{self._ann_rows}.faiss"
        tmp = os.path.join(self._dir, f".{name}.{os.getpid()}.tmp")
        try:
            self._faiss.write_index(self._ann, tmp)
            os.replace(tmp, os.path.join(self._dir, name))
        except (RuntimeError, OSError) as exc:
            self.logger.warning("could not save the approximate index (%s); it will be built again", exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self._ann_saved = self._ann_rows
        for _, other in self._ann_files():
            if other != name:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._dir, other))

    # ------------------------------------------------------------------ bookkeeping
    def _sync_in_background(self) -> Future:
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="index-fsync")
        return self._syncer.submit(self._sync_files)

    def _sync_files(self) -> None:
        self._vec.sync()
        self._norm.sync()

    def _changed(self, appended: bool) -> None:
        self._cache.clear()
        if not appended:
            self._ann, self._ann_rows, self._ann_saved = None, 0, None  # rows moved or changed: rebuild

    def _begin_moves(self, moves: dict[int, np.ndarray], rewrites: bool) -> None:
        """Inside a write transaction: journal the rows about to be overwritten in place, and count a
        change other than an append in ``epoch`` (replicas drop their approximate index on it)."""
        # the last moves (whichever replica made them) reach the disk before their journal goes
        if self._sync_writes and self._db.execute("SELECT 1 FROM moves LIMIT 1").fetchone():
            self._sync_files()
        self._db.execute("DELETE FROM moves")
        if rewrites:
            self._db.execute("INSERT INTO meta VALUES ('epoch', '1') ON CONFLICT (key) DO UPDATE "
                             "SET value = CAST(value AS INTEGER) + 1")
            self._epoch = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
        if moves:
            self._db.executemany("INSERT INTO moves (slot, embedding) VALUES (?, ?)",
                                 ((s, np.ascontiguousarray(x, dtype=np.float32).tobytes())
                                  for s, x in moves.items()))

    def _apply_moves(self, moves: dict[int, np.ndarray]) -> None:
        for slot, x in moves.items():
            x = np.asarray(x, dtype=np.float32)[None, :]
            self._vec.write(slot, x)
            self._norm.write(slot, np.einsum("ij,ij->i", x, x)[:, None])

    def _id_map(self) -> IdMap:
        """The id -> slot map of this store, built from SQLite's ids the first time it is needed."""
        if self._ids is None:
            ids_map = IdMap()
            cur = self._db.execute("SELECT id FROM docs WHERE slot < ? ORDER BY slot", (self._n,))
            while rows := cur.fetchmany(65536):
                ids_map.append(id_hashes([r[0] for r in rows]))
            self._ids = ids_map
        return self._ids

    def _ids_changed(self, change) -> None:
        """Apply a committed write to the id map (or drop the map, to be built again, if that fails)."""
        if self._ids is None:
            return
        try:
            change(self._ids)
        except BaseException:
            self._ids = None
            raise

    def _slots_of(self, ids: Sequence[str], hashes: np.ndarray | None = None) -> dict[str, int]:
        """id -> slot of the given ids that are stored: candidates by hash, confirmed by SQLite."""
        ids = list(ids)
        if not ids:
            return {}
        found, slots = self._id_map().find(id_hashes(ids) if hashes is None else hashes)
        if not len(found):
            return {}
        unique = np.unique(slots).tolist()
        stored: dict[int, str] = {}
        for i in range(0, len(unique), _SQL_CHUNK):
            part = unique[i:i + _SQL_CHUNK]
            stored.update(self._db.execute(f"SELECT slot, id FROM docs WHERE slot IN ({','.join('?' * len(part))})",
                                           part).fetchall())
        return {ids[i]: s for i, s in zip(found.tolist(), slots.tolist()) if stored.get(s) == ids[i]}

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

    def _require_known(self, ids: Iterable[str], verb: str) -> dict[str, int]:
        """id -> slot of every given id; BadDocument naming the unknown ones if any is not stored."""
        ids = list(ids)
        stored = self._slots_of(ids)
        unknown = [i for i in ids if i not in stored]
        if unknown:
            raise BadDocument(f"is not in the index, so nothing was {verb} ({len(unknown)} unknown ids: "
                              f"{_some(unknown)})", unknown[0])
        return stored

    # ------------------------------------------------------------------ persistence
    @staticmethod
    def _open_db(path: str, durability: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.isolation_level = "DEFERRED"  # `with db:` wraps each change in one transaction
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        # Documents with random ids touch most pages of the id index in every /index request; at
        # SQLite's default (a checkpoint per 1,000 pages of WAL) nearly every request also copies them
        # into the database file. Checkpointing less often copies a page once for many requests.
        # Commits still fsync the WAL (synchronous above): durability is the same.
        db.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={_WAL_CHECKPOINT_PAGES * 4096 * 2}")
        # SQLite's own page cache (2 MB by default) would be the largest thing the process holds beside
        # the vectors for a small index; the OS caches the file anyway, and reads by slot touch few pages
        db.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KB}")
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'docs'").fetchone() is None
            if fresh:
                IndexExecutor._create_tables(db)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        return db

    @staticmethod
    def _create_tables(db: sqlite3.Connection) -> None:
        # no index on id: the id -> slot map (index_ids) finds slots and keeps ids unique
        db.execute("CREATE TABLE docs (slot INTEGER PRIMARY KEY, id TEXT NOT NULL, doc TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS moves (slot INTEGER PRIMARY KEY, embedding BLOB NOT NULL)")

    def _open_store(self) -> None:
        """Open the shard's store where ``CURRENT`` points (under the exclusive lock)."""
        self._stamp = storage.pointer_stamp(self._home)
        self._dir = storage.store_dir(self._home)
        self._db = self._open_db(os.path.join(self._dir, "index.sqlite"), self._durability)
        self._load()
        self._epoch = self._meta("epoch")
        self._version = self._db.execute("PRAGMA data_version").fetchone()[0]

    def _close_store(self) -> None:
        for f in (self._vec, self._norm):
            if f is not None:
                f.close()
        self._vec = self._norm = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self.dim, self._n = self._dim_given, 0
        self._cache.clear()
        self._ann, self._ann_rows, self._ann_saved = None, 0, None
        self._ids = None

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _follow(self) -> None:
        """Catch up with what other replicas of the shard did since this one last looked: a store
        replaced by a dump (reopen it), or commits (re-read the count, map new rows, drop caches)."""
        if self._db is None:
            raise BadConfig(f"_index: {self._home} was closed")
        if storage.pointer_stamp(self._home) != self._stamp:
            if storage.store_dir(self._home) != self._dir:
                self._close_store()
                self._open_store()
                return
            self._stamp = storage.pointer_stamp(self._home)
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return
        self._version = version
        dim = self._meta("dim")
        (top,) = self._db.execute("SELECT max(slot) FROM docs").fetchone()
        count = 0 if top is None else top + 1
        if dim is not None:
            if self._vec is None or self.dim != int(dim):
                self._open_files(int(dim), fresh=False)
            else:
                self._vec.refresh()
                self._norm.refresh()
            self.dim = int(dim)
        epoch = self._meta("epoch")
        if epoch != self._epoch or count < self._ann_rows:  # rows moved, changed or went: rebuild
            self._ann, self._ann_rows, self._ann_saved = None, 0, None
        if epoch != self._epoch or count < self._n:  # (an update with embeddings too: rare, and cheap to redo)
            self._ids = None
        elif count > self._n and self._ids is not None:  # another replica appended: map its ids
            new = [r[0] for r in self._db.execute("SELECT id FROM docs WHERE slot >= ? ORDER BY slot", (self._n,))]
            self._ids_changed(lambda ids_map: ids_map.append(id_hashes(new)))
        if epoch != self._epoch and self._vec is not None:
            self._finish_moves()
        self._epoch = epoch
        self._n = count
        self._cache.clear()

    def _finish_moves(self) -> None:
        """Rows another replica committed to move but did not write (it died in between): write them.

        Every replica that reads them first checks the journal against the files and writes the same
        bytes, so doing it under the shared lock is safe; a live writer has always written them already."""
        journal = self._db.execute("SELECT slot, embedding FROM moves").fetchall()
        missing = {}
        for slot, blob in journal:
            x = np.frombuffer(blob, dtype=np.float32)
            if slot >= self._vec.cap or not np.array_equal(self._vec.rows[slot], x):
                missing[slot] = x
        if missing:
            self.logger.warning("finishing %d row moves a replica of shard %d committed but did not write",
                                len(missing), self.shard_id)
            self._vec.reserve(max(missing) + 1)
            self._norm.reserve(max(missing) + 1)
            self._apply_moves(missing)

    def _copy_dump(self, dump_path: str) -> tuple[str, dict] | None:
        path = os.path.abspath(resolve_path(dump_path, None, "dump_path"))
        src, manifest = storage.read_manifest(path, self.shard_id, self.shards)
        new = storage.copy_dump(self._home, src, manifest)
        return None if new is None else (new, manifest)

    def _open_files(self, dim: int, fresh: bool) -> None:
        for f in (self._vec, self._norm):
            if f is not None:
                f.close()
        self._vec = _RowFile(os.path.join(self._dir, "vectors.f32"), dim, fresh)
        self._norm = _RowFile(os.path.join(self._dir, "norms.f32"), 1, fresh)

    def _set_dim(self, dim: int) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
        self.dim = int(dim)

    def _load(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") == "1":
            self._migrate_v1(int(meta["dim"]) if "dim" in meta else None)
            meta["schema"] = _SCHEMA_VERSION
        if meta.get("schema") == "2":
            self._migrate_v2()
            meta["schema"] = _SCHEMA_VERSION
        if meta.get("schema") != _SCHEMA_VERSION:
            raise BadConfig(f"_index: {self._dir} holds index schema {meta.get('schema')!r}, "
                            f"this version reads {_SCHEMA_VERSION!r}")
        stored = int(meta["dim"]) if "dim" in meta else None
        if stored is not None and self.dim is not None and stored != self.dim:
            raise BadConfig(f"_index: dim={self.dim} given, but {self._dir} holds dimension {stored}")
        if stored is None:
            if self.dim is not None:
                self._set_dim(self.dim)
            return
        self.dim = stored
        count, top = self._db.execute("SELECT count(*), max(slot) FROM docs").fetchone()
        if count and top != count - 1:
            raise BadConfig(f"_index: {self._dir}: slots are not packed ({count} rows, last slot {top})")
        self._open_files(stored, fresh=False)
        if self._vec.cap < count or self._norm.cap < count:
            raise BadConfig(f"_index: {self._dir}: vectors.f32 holds {self._vec.cap} rows, "
                            f"the store {count} Documents")
        journal = self._db.execute("SELECT slot, embedding FROM moves").fetchall()
        if journal:  # a crash between a move's commit and its writes: apply it again
            self._apply_moves({s: np.frombuffer(e, dtype=np.float32) for s, e in journal})
        self._n = count
        self.logger.info("opened %d Documents of dimension %d in %s (engine %s)", count, stored,
                         self._dir, self.engine)

    def _migrate_v1(self, dim: int | None) -> None:
        """Schema 1 kept the embeddings in SQLite: move them to the vector files, slots by rowid."""
        if dim is not None:
            self._open_files(dim, fresh=True)
            start = 0
            cur = self._db.execute("SELECT embedding FROM docs ORDER BY rowid")
            while rows := cur.fetchmany(10000):
                X = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), dim)
                self._vec.reserve(start + len(X))
                self._norm.reserve(start + len(X))
                self._vec.write(start, X)
                self._norm.write(start, np.einsum("ij,ij->i", X, X)[:, None])
                start += len(X)
            self._vec.sync()
            self._norm.sync()
        with self._db:
            self._db.execute("ALTER TABLE docs RENAME TO docs_v1")
            self._create_tables(self._db)
            self._db.execute("INSERT INTO docs (slot, id, doc) SELECT row_number() OVER (ORDER BY rowid) - 1, "
                             "id, doc FROM docs_v1")
            self._db.execute("DROP TABLE docs_v1")
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (_SCHEMA_VERSION,))
        self.logger.info("moved %s to index schema %s", self._dir, _SCHEMA_VERSION)

    def _migrate_v2(self) -> None:
        """Schema 2 kept a unique index on the id in SQLite: the same table without it."""
        with self._db:
            self._db.execute("ALTER TABLE docs RENAME TO docs_v2")
            self._db.execute("CREATE TABLE docs (slot INTEGER PRIMARY KEY, id TEXT NOT NULL, doc TEXT)")
            self._db.execute("INSERT INTO docs (slot, id, doc) SELECT slot, id, doc FROM docs_v2")
            self._db.execute("DROP TABLE docs_v2")
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (_SCHEMA_VERSION,))
        self.logger.info("moved %s to index schema %s (ids found through the id map)", self._dir, _SCHEMA_VERSION)

    def _documents(self, slots: np.ndarray) -> dict[int, Document]:
        """Slot -> stored Document (with a copy of its embedding), one SQLite query per 500 slots."""
        out: dict[int, Document] = {}
        slots = slots[slots >= 0].tolist()
        vecs = self._vec.rows[slots]
        vec_of = dict(zip(slots, vecs))
        for i in range(0, len(slots), _SQL_CHUNK):
            part = slots[i:i + _SQL_CHUNK]
            rows = self._db.execute(f"SELECT slot, id, doc FROM docs WHERE slot IN ({','.join('?' * len(part))})",
                                    part).fetchall()
            for s, doc_id, doc in rows:
                out[s] = (Document(id=doc_id, embedding=vec_of[s]) if doc is None
                          else _deserialise(doc_id, doc, vec_of[s]))
        return out

    def close(self) -> None:
        for name in ("_syncer", "_searchers"):
            pool = getattr(self, name, None)
            setattr(self, name, None)
            if pool is not None:
                pool.shutdown()
        lock = getattr(self, "_lock", None)
        db = getattr(self, "_db", None)
        try:
            if db is not None and lock is not None:
                with lock.shared():  # no replica writes meanwhile, so the checkpoint does not wait
                    self._follow()
                    self._ann_save()  # with the rows appended since it was last saved
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            if lock is not None:
                self._close_store()
                lock.close()


# ---------------------------------------------------------------------- helpers
def _faiss_knn(faiss, Q: np.ndarray, V: np.ndarray, norms: np.ndarray | None, k: int,
               metric: str) -> tuple[np.ndarray, np.ndarray]:
    """faiss's exact k-NN of each query among the rows V: (scores, rows), L2 squared or inner product."""
    D = np.empty((len(Q), k), dtype=np.float32)
    Idx = np.empty((len(Q), k), dtype=np.int64)
    ptr, d = faiss.swig_ptr, V.shape[1]
    if metric == "euclidean":
        faiss.knn_L2sqr(ptr(Q), ptr(V), d, len(Q), len(V), k, ptr(D), ptr(Idx), ptr(norms))
    else:
        faiss.knn_inner_product(ptr(Q), ptr(V), d, len(Q), len(V), k, ptr(D), ptr(Idx))
    return D, Idx


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _some(ids: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:n])
    return f"[{shown}{', ...' if len(ids) > n else ''}]"


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), float32."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X, dtype=np.float32), where=norms > 0).astype(np.float32)


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

"""Document and DocumentArray: the items that flow through a Flow.

A Document is a small slotted object; its arrays (``blob``, ``embedding``) are plain numpy
arrays. Documents received over the wire hold read-only views into the received frames
(zero-copy): assign a new array instead of writing into a received one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from .errors import BadDocument

_FIELDS = ("id", "text", "blob", "buffer", "uri", "mime_type", "tags", "embedding", "chunks", "matches",
           "scores", "content")


class Score(float):
    """A score: a plain float that also reads the Jina 2.x way, ``m.scores['euclidean'].value``."""

    __slots__ = ()

    @property
    def value(self) -> float:
        return float(self)

    def __repr__(self) -> str:
        return float.__repr__(self)


class Scores(dict):
    """Score name -> value. Values are kept as plain floats (what goes on the wire, unchanged) and
    read back as :class:`Score`, so ``scores['cosine']`` is a float with a ``.value``."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        self.update(*args, **kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, float(value))

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            dict.__setitem__(self, key, float(value))

    def setdefault(self, key: str, default: Any = 0.0) -> Score:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def __getitem__(self, key: str) -> Score:
        return Score(dict.__getitem__(self, key))

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return Score(dict.__getitem__(self, key)) if key in self else default

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        if key in self:
            return Score(dict.pop(self, key))
        return dict.pop(self, key, *default)

    def values(self) -> list[Score]:  # type: ignore[override]
        return [Score(v) for v in dict.values(self)]

    def items(self) -> list[tuple[str, Score]]:  # type: ignore[override]
        return [(k, Score(v)) for k, v in dict.items(self)]

    def copy(self) -> Scores:
        return Scores(self)


def new_id() -> str:
    """A random 128-bit id as 32 hex characters."""
    return os.urandom(16).hex()


def _as_array(value: Any, field: str, doc_id: str | None) -> np.ndarray | None:
    if value is None or isinstance(value, np.ndarray):
        return value
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise BadDocument(f"{field} must be array-like, got {type(value).__name__}", doc_id) from exc
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise BadDocument(f"{field} must be numeric, got {arr.dtype} from {type(value).__name__}", doc_id)
    return arr


class Document:
    """One item: id, content (text/blob/buffer/uri), embedding, tags, chunks, matches, scores."""

    __slots__ = ("id", "text", "_blob", "buffer", "uri", "mime_type", "_tags", "_embedding", "_chunks",
                 "_matches", "_scores")

    def __init__(self, id: str | None = None, text: str | None = None, blob: Any = None,
                 buffer: bytes | None = None, uri: str | None = None, mime_type: str | None = None,
                 tags: dict | None = None, embedding: Any = None, chunks: Iterable[Document] | None = None,
                 matches: Iterable[Document] | None = None, scores: dict[str, float] | None = None,
                 content: Any = None, **extra: Any):
        if extra:
            raise BadDocument(f"unknown field(s) {sorted(extra)}; known: {', '.join(_FIELDS)}", id)
        self.id = str(id) if id is not None else new_id()
        if content is not None:
            if text is not None or blob is not None or buffer is not None:
                raise BadDocument("give `content` or one of text/blob/buffer, not both", self.id)
            text, blob, buffer = _split_content(content, self.id)
        if text is not None and not isinstance(text, str):
            raise BadDocument(f"text must be str, got {type(text).__name__}", self.id)
        self.text = text
        if buffer is not None and not isinstance(buffer, (bytes, bytearray, memoryview)):
            raise BadDocument(f"buffer must be bytes, got {type(buffer).__name__}", self.id)
        self.buffer = bytes(buffer) if isinstance(buffer, (bytearray, memoryview)) else buffer
        self.uri = uri
        self.mime_type = mime_type
        self._blob = _as_array(blob, "blob", self.id)
        self._embedding = _as_array(embedding, "embedding", self.id)
        self._tags = dict(tags) if tags else None
        self._chunks = DocumentArray(chunks) if chunks else None
        self._matches = DocumentArray(matches) if matches else None
        self._scores = Scores(scores) if scores else None

    # arrays are validated on assignment so bad data fails where it is set, naming the Document
    @property
    def blob(self) -> np.ndarray | None:
        return self._blob

    @blob.setter
    def blob(self, value: Any) -> None:
        self._blob = _as_array(value, "blob", self.id)

    @property
    def embedding(self) -> np.ndarray | None:
        return self._embedding

    @embedding.setter
    def embedding(self, value: Any) -> None:
        self._embedding = _as_array(value, "embedding", self.id)

    @property
    def tags(self) -> dict:
        if self._tags is None:
            self._tags = {}
        return self._tags

    @tags.setter
    def tags(self, value: dict | None) -> None:
        self._tags = dict(value) if value else None

    @property
    def chunks(self) -> DocumentArray:
        if self._chunks is None:
            self._chunks = DocumentArray()
        return self._chunks

    @chunks.setter
    def chunks(self, value: Iterable[Document] | None) -> None:
        self._chunks = DocumentArray(value) if value else None

    @property
    def matches(self) -> DocumentArray:
        if self._matches is None:
            self._matches = DocumentArray()
        return self._matches

    @matches.setter
    def matches(self, value: Iterable[Document] | None) -> None:
        self._matches = DocumentArray(value) if value else None

    @property
    def scores(self) -> Scores:
        """Score name -> :class:`Score` (a float; ``.value`` reads it the Jina 2.x way)."""
        s = self._scores
        if s is None:
            s = self._scores = Scores()
        elif type(s) is not Scores:  # a plain dict, as decoded from the wire
            s = self._scores = Scores(s)
        return s

    @scores.setter
    def scores(self, value: dict[str, float] | None) -> None:
        self._scores = Scores(value) if value else None

    @property
    def score(self) -> Score:
        """The only score, for Jina 1.x's ``m.score.value``; with several, name one: ``m.scores[name]``."""
        names = list(self._scores or ())
        if len(names) != 1:
            raise AttributeError(f"Document {self.id!r} has {len(names)} scores {names}: `score` is Jina 1.x; "
                                 "read one by name, e.g. `m.scores['euclidean'].value`")
        return self.scores[names[0]]

    @property
    def content(self) -> Any:
        """The first content field that is set: text, then blob, then buffer."""
        if self.text is not None:
            return self.text
        if self._blob is not None:
            return self._blob
        return self.buffer

    @content.setter
    def content(self, value: Any) -> None:
        """Set text (a str), buffer (bytes) or blob (an array) by the value's type; the others are cleared."""
        self.text, blob, self.buffer = _split_content(value, self.id) if value is not None else (None,) * 3
        self.blob = blob

    def has(self, field: str) -> bool:
        """Whether a field carries a value (empty tags/chunks/matches/scores count as unset)."""
        attr = "_" + field if field in ("blob", "embedding", "tags", "chunks", "matches", "scores") else field
        value = getattr(self, attr)
        return value is not None and not (isinstance(value, (dict, DocumentArray)) and len(value) == 0)

    # ---- JSON form (the HTTP gateway's and the daemon's) ----
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; absent fields are omitted; arrays become nested lists."""
        out: dict[str, Any] = {"id": self.id}
        for name in ("text", "uri", "mime_type"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        if self._tags:
            out["tags"] = self._tags
        if self._embedding is not None:
            out["embedding"] = self._embedding.tolist()
        if self._blob is not None:
            out["blob"] = self._blob.tolist()
        if self.buffer is not None:
            out["buffer"] = self.buffer.hex()
        if self._chunks:
            out["chunks"] = [d.to_dict() for d in self._chunks]
        if self._matches:
            out["matches"] = [d.to_dict() for d in self._matches]
        if self._scores:
            out["scores"] = self._scores
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Document:
        if not isinstance(data, dict):
            raise BadDocument(f"a Document must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        doc_id = data.get("id")
        buf = data.pop("buffer", None)
        if isinstance(buf, str):
            try:
                buf = bytes.fromhex(buf)
            except ValueError as exc:
                raise BadDocument("buffer must be a hex string", doc_id) from exc
        chunks = [cls.from_dict(c) for c in data.pop("chunks", None) or ()]
        matches = [cls.from_dict(m) for m in data.pop("matches", None) or ()]
        emb = data.pop("embedding", None)
        blob = data.pop("blob", None)
        doc = cls(buffer=buf, chunks=chunks, matches=matches, **data)
        if emb is not None:
            doc.embedding = np.asarray(emb, dtype=np.float32) if _all_numbers(emb) else _as_array(
                emb, "embedding", doc.id)
        if blob is not None:
            doc.blob = _as_array(blob, "blob", doc.id)
        return doc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"id={self.id!r}"]
        if self.text is not None:
            parts.append(f"text={self.text[:40]!r}")
        if self._embedding is not None:
            parts.append(f"embedding={self._embedding.dtype}{list(self._embedding.shape)}")
        if self._blob is not None:
            parts.append(f"blob={self._blob.dtype}{list(self._blob.shape)}")
        if self._tags:
            parts.append(f"tags={self._tags}")
        if self._matches:
            parts.append(f"matches={len(self._matches)}")
        if self._chunks:
            parts.append(f"chunks={len(self._chunks)}")
        if self._scores:
            parts.append(f"scores={self._scores}")
        return f"<Document {' '.join(parts)}>"

    def plot(self, path: str | None = None, engine: str = "auto") -> str:
        """Draw this Document with its nested chunks and matches as SVG (written to `path` if given).

        Graphviz's ``dot`` lays it out when it is on PATH, else a built-in layout does (see
        :func:`jinad_fab.viz.render_svg`); returns the SVG text."""
        from .viz import document_svg

        return document_svg(self, path, engine)


def _split_content(value: Any, doc_id: str) -> tuple[str | None, Any, bytes | None]:
    """`content=` as (text, blob, buffer), chosen by type."""
    if isinstance(value, str):
        return value, None, None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None, None, bytes(value)
    if isinstance(value, np.ndarray):
        return None, value, None
    raise BadDocument(f"content must be str (text), bytes (buffer) or a numpy array (blob), "
                      f"got {type(value).__name__}", doc_id)


def _all_numbers(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return False


_REPR_DOCS = 5  # a printed DocumentArray shows this many Documents


def _new_ids(n: int) -> list[str]:
    hexes = os.urandom(16 * n).hex()
    return [hexes[i:i + 32] for i in range(0, 32 * n, 32)]


def _bare_documents(ids: list[str]) -> list[Document]:
    """Documents with these ids and every other field unset, without per-Document validation."""
    new = Document.__new__
    docs = []
    for i in ids:
        d = new(Document)
        d.id = i
        d.text = d._blob = d.buffer = d.uri = d.mime_type = d._tags = d._embedding = None
        d._chunks = d._matches = d._scores = None
        docs.append(d)
    return docs


class _Columns:
    """Documents not built yet, held as columns: ids, texts, an embedding matrix, a blob matrix.

    A DocumentArray made from a list of texts or a matrix (or decoded from the wire) refers to a
    range of these until something needs Document objects; every slice refers to the same columns,
    and the Documents are built once for all of them, so slices share their Documents as slices of
    a list do. The codec sends a range that is still columns without reading any Document.
    """

    __slots__ = ("n", "ids", "text", "embedding", "blob", "docs", "rows")

    def __init__(self, ids: list[str], text: list | None = None, embedding: np.ndarray | None = None,
                 blob: np.ndarray | None = None):
        self.n = len(ids)
        self.ids, self.text, self.embedding, self.blob = ids, text, embedding, blob
        self.docs: list[Document] | None = None
        self.rows: list | None = None  # the embedding rows the built Documents hold

    def build(self) -> list[Document]:
        if self.docs is None:
            docs = _bare_documents(self.ids)
            if self.text is not None:
                for d, t in zip(docs, self.text):
                    d.text = t
            if self.embedding is not None:
                self.rows = list(self.embedding)
                for d, r in zip(docs, self.rows):
                    d._embedding = r
            if self.blob is not None:
                for d, r in zip(docs, self.blob):
                    d._blob = r
            self.docs = docs
        return self.docs


class DocumentArray(Sequence):
    """A list of Documents with an id index and a stacked view of their embeddings.

    Made from columns (:meth:`empty` then ``.texts =`` / ``.embeddings =``, the Client's batches of
    texts or arrays, Documents received from the wire), it builds its Document objects only when
    one is asked for: ``len``, slices, ``ids``, ``texts``, ``embeddings`` and sending it do not.
    """

    __slots__ = ("_list", "_view", "_emb_matrix", "_emb_rows")

    def __init__(self, docs: Iterable[Document] | Document | None = None):
        if docs is None:
            self._docs = []
        elif isinstance(docs, Document):
            self._docs = [docs]
        elif isinstance(docs, DocumentArray):
            self._docs = list(docs._docs)
        else:
            self._docs = list(docs)
            for d in self._docs:
                if not isinstance(d, Document):
                    raise BadDocument(f"expected Document, got {type(d).__name__}")
        # the matrix the embeddings of these docs are row views of, and those row objects: while
        # every Document still holds its row (an identity check), `.embeddings` returns the matrix
        self._emb_matrix: np.ndarray | None = None
        self._emb_rows: list | None = None

    # ---- the Documents: a list, or a range of columns not built yet ----
    @property
    def _docs(self) -> list[Document]:
        docs = self._list
        if docs is None:
            cols, a, b = self._view
            docs = self._list = cols.build()[a:b]
            if cols.rows is not None:
                self._emb_matrix, self._emb_rows = cols.embedding[a:b], cols.rows[a:b]
            self._view = None
        return docs

    @_docs.setter
    def _docs(self, docs: list[Document]) -> None:
        self._list = docs
        self._view = None

    @classmethod
    def _of_columns(cls, cols: _Columns, a: int = 0, b: int | None = None) -> DocumentArray:
        out = cls.__new__(cls)
        out._list = None
        out._view = (cols, a, cols.n if b is None else b)
        out._emb_matrix = out._emb_rows = None
        return out

    @classmethod
    def _joined(cls, parts: list[DocumentArray]) -> DocumentArray | None:
        """``parts`` end to end as one array held as columns, without building a Document, when
        every part is still columns of the same fields (answers as they come from the wire); None
        otherwise. The parts then refer to ranges of the joined columns, so a Document built
        through a part or through the whole is one object, as when the whole is made by extend()."""
        views = []
        for part in parts:
            view = part._columns()
            if view is None:
                return None
            views.append(view)
        if not views:
            return None
        first = views[0][0]
        for cols, _, _ in views:
            if (cols.text is None) != (first.text is None):
                return None
            for key in ("embedding", "blob"):
                m, m0 = getattr(cols, key), getattr(first, key)
                if (m is None) != (m0 is None) or (m is not None and (m.shape[1:] != m0.shape[1:] or m.dtype != m0.dtype)):
                    return None
        ids: list[str] = []
        for cols, a, b in views:
            ids += cols.ids[a:b]
        joined = _Columns(ids)
        if first.text is not None:
            texts: list = []
            for cols, a, b in views:
                texts += cols.text[a:b]
            joined.text = texts
        for key in ("embedding", "blob"):
            if getattr(first, key) is not None:
                setattr(joined, key, np.concatenate([getattr(cols, key)[a:b] for cols, a, b in views]))
        start = 0
        for part, (_, a, b) in zip(parts, views):
            part._view = (joined, start, start + b - a)
            start += b - a
        return cls._of_columns(joined)

    def _range(self, start: int, stop: int) -> DocumentArray:
        """``self[start:stop]`` for ``0 <= start <= stop <= len(self)``, without a slice's checks
        (the client cuts every call's inputs into requests with it)."""
        view = self._view
        if view is not None and view[0].docs is None:
            out = DocumentArray.__new__(DocumentArray)
            out._list = None
            out._view = (view[0], view[1] + start, view[1] + stop)
            out._emb_matrix = out._emb_rows = None
            return out
        return self[start:stop]

    def _columns(self) -> tuple[_Columns, int, int] | None:
        """(columns, start, stop) while no Document was built from the columns (after that, the
        Documents hold the truth: one may have been changed through another slice)."""
        view = self._view
        if view is not None and view[0].docs is None:
            return view
        return None

    def _whole_columns(self) -> _Columns | None:
        """The columns, when this array is all of them and no Document was built from them yet."""
        view = self._columns()
        if view is not None and view[1] == 0 and view[2] == view[0].n:
            return view[0]
        return None

    @classmethod
    def empty(cls, n: int) -> DocumentArray:
        """n Documents with new ids and nothing else set, to fill column by column
        (``docs.texts = [...]``, ``docs.embeddings = matrix``) without building n objects."""
        return cls._of_columns(_Columns(_new_ids(int(n))))

    @classmethod
    def _of_column(cls, field: str, values: Any) -> DocumentArray:
        """Documents with new ids and one field set from already-checked values (the client's fast
        path for lists of texts and for the rows of a matrix): ``text`` takes a list, ``_blob`` a matrix."""
        cols = _Columns(_new_ids(len(values)))
        if field == "text":
            cols.text = list(values)
        elif field == "_blob":
            cols.blob = values
        else:
            raise ValueError(field)
        return cls._of_columns(cols)

    def __len__(self) -> int:
        if self._list is not None:
            return len(self._list)
        _, a, b = self._view
        return b - a

    @overload
    def __getitem__(self, key: int) -> Document: ...
    @overload
    def __getitem__(self, key: slice) -> DocumentArray: ...
    @overload
    def __getitem__(self, key: str) -> Document: ...

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            for d in self._docs:
                if d.id == key:
                    return d
            raise KeyError(key)
        view = self._columns() if isinstance(key, slice) and key.step in (None, 1) else None
        if view is not None:
            cols, a, b = view
            r = range(a, b)[key]
            return DocumentArray._of_columns(cols, r.start, max(r.start, r.stop))
        if isinstance(key, slice):
            out = DocumentArray()
            out._docs = self._docs[key]
            if self._emb_rows is not None and len(self._emb_rows) == len(self._docs) and key.step in (None, 1):
                # a contiguous slice keeps a view of the shared matrix (sending it stays zero-copy);
                # `stacked_embeddings` checks just the slice's rows
                out._emb_matrix, out._emb_rows = self._emb_matrix[key], self._emb_rows[key]
            return out
        return self._docs[key]

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(d.id == item for d in self._docs)
        return item in self._docs

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DocumentArray):
            return NotImplemented
        return self._docs == other._docs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n = len(self._docs)
        shown = ", ".join(repr(d) for d in self._docs[:_REPR_DOCS])
        more = f", ... {n - _REPR_DOCS} more" if n > _REPR_DOCS else ""
        return f"<DocumentArray len={n} [{shown}{more}]>"

    def append(self, doc: Document) -> None:
        if not isinstance(doc, Document):
            raise BadDocument(f"expected Document, got {type(doc).__name__}")
        self._docs.append(doc)

    def extend(self, docs: Iterable[Document]) -> None:
        for d in docs:
            self.append(d)

    def clear(self) -> None:
        self._docs = []
        self._emb_matrix = self._emb_rows = None

    def stacked_embeddings(self) -> np.ndarray | None:
        """The shared embedding matrix if every Document still holds its row of it, else None (cheap)."""
        view = self._columns()
        if view is not None:
            cols, a, b = view
            return None if cols.embedding is None else cols.embedding[a:b]
        rows = self._emb_rows
        if rows is None or len(rows) != len(self._docs):
            return None
        for d, r in zip(self._docs, rows):
            if d._embedding is not r:
                return None
        return self._emb_matrix

    @property
    def ids(self) -> list[str]:
        view = self._columns()
        if view is not None:
            cols, a, b = view
            return cols.ids[a:b]
        return [d.id for d in self._docs]

    @property
    def texts(self) -> list[str | None]:
        view = self._columns()
        if view is not None:
            cols, a, b = view
            return [None] * (b - a) if cols.text is None else cols.text[a:b]
        return [d.text for d in self._docs]

    @texts.setter
    def texts(self, values: Iterable[str | None]) -> None:
        values = list(values)
        if len(values) != len(self):
            raise BadDocument(f"{len(values)} texts for {len(self)} Documents")
        for i, t in enumerate(values):
            if t is not None and not isinstance(t, str):
                raise BadDocument(f"text must be str, got {type(t).__name__}", self.ids[i])
        cols = self._whole_columns()
        if cols is not None:
            cols.text = values
            return
        for d, t in zip(self._docs, values):
            d.text = t

    @property
    def embeddings(self) -> np.ndarray | None:
        """The (N, ...) matrix of embeddings; no copy when they already are rows of one matrix."""
        if not len(self):
            return None
        m = self.stacked_embeddings()
        if m is not None:
            return m
        embs = [d._embedding for d in self._docs]
        missing = [d.id for d, e in zip(self._docs, embs) if e is None]
        if missing:
            raise BadDocument(f"no embedding ({len(missing)} of {len(embs)} Documents lack one)", missing[0])
        try:
            m = np.stack(embs)
        except ValueError as exc:
            shapes = {e.shape for e in embs}
            raise BadDocument(f"embeddings have different shapes {sorted(shapes)}", self._docs[0].id) from exc
        self._set_embedding_rows(m)
        return m

    @embeddings.setter
    def embeddings(self, matrix: Any) -> None:
        m = np.asarray(matrix)
        if len(m) != len(self):
            raise BadDocument(f"{len(m)} embeddings for {len(self)} Documents")
        cols = self._whole_columns()
        if cols is not None and m.ndim > 1 and m.dtype.kind in "biufc":
            cols.embedding = m
            return
        self._set_embedding_rows(m)

    def _set_embedding_rows(self, m: np.ndarray) -> None:
        rows = list(m)
        for d, row in zip(self._docs, rows):
            d._embedding = row
        self._emb_matrix = m
        self._emb_rows = rows

    @property
    def blobs(self) -> np.ndarray | None:
        if not self._docs:
            return None
        return np.stack([d.blob for d in self._docs])

    def to_list(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self._docs]

    @classmethod
    def from_list(cls, items: Iterable[dict[str, Any]]) -> DocumentArray:
        return cls(Document.from_dict(x) for x in items)

    def plot(self, path: str | None = None, engine: str = "auto") -> str:
        """Draw the Documents as the chunks of one root node (see :meth:`Document.plot`)."""
        from .viz import document_svg

        return document_svg(Document(id="DocumentArray", chunks=list(self)), path, engine)

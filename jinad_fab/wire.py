"""The wire codec: a request <-> a list of frames. Pure functions, no sockets.

A message is ``[header, body, *arrays]``:

* ``header``: a small JSON object (request id, endpoint, parameters, status, route);
* ``body``: a JSON object describing the Documents column by column (ids, texts, tags, ...)
  and, for each array field, which frame holds it and with which dtype/shape;
* ``arrays``: raw array buffers. Embeddings (and blobs) of the same shape are stacked into one
  frame, so a batch of 100 embeddings is one buffer, and a receiver gets a (100, d) matrix that
  is a view of the received frame (no copy).

Peas that do not look at Documents forward ``body`` and ``arrays`` as received, without
decoding them (see :class:`Message`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from operator import is_not
from typing import Any

import numpy as np
import orjson

from .document import Document, DocumentArray, _Columns
from .errors import BadDocument, BadInput

Frame = Any  # bytes, memoryview or zmq.Frame: anything with the buffer protocol

_EMPTY_BODY = orjson.dumps({"n": 0})


def _loads(frame: Frame) -> Any:
    if not isinstance(frame, (bytes, bytearray, memoryview, str)):
        frame = memoryview(frame)
    return orjson.loads(frame)


def _array_spec(arr: np.ndarray, frames: list) -> list:
    arr = np.ascontiguousarray(arr)
    frames.append(arr)
    return [len(frames) - 1, arr.dtype.str, list(arr.shape)]


def _encode_arrays(values: list[np.ndarray | None], frames: list) -> dict | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if len(present) == len(values) and all(v.shape == first.shape and v.dtype == first.dtype for v in values):
        if len(values) == 1:
            stacked = first
        else:
            stacked = np.stack(values)
        return {"stack": _array_spec(stacked.reshape((len(values),) + first.shape), frames)}
    return {"each": [None if v is None else _array_spec(v, frames) for v in values]}


_is_set = partial(is_not, None)  # x -> None is not x, in C


def _some(col: list) -> bool:
    """Whether any value of a column of strings (or None) is set. ``list.count(None)`` compares each
    string with None the slow way (about 30 ns each): the first value answers the common case."""
    return bool(col) and (col[0] is not None or col.count(None) != len(col))


def _nested(subs: list, frames: list) -> dict | None:
    if subs.count(None) == len(subs):  # the common case: no chunks/matches at all
        return None
    counts = []
    flat: list[Document] = []
    for sub in subs:
        if sub:
            counts.append(len(sub))
            flat.extend(sub)
        else:
            counts.append(0)
    if not flat:
        return None
    return {"counts": counts, "docs": _encode_docs(flat, frames)}


def _sets_rare(ds: Sequence[Document]) -> bool:
    """Whether any Document sets a field most batches leave unset everywhere (one loop for all of
    them, stopping at the first: cheaper than one list per field when none is set)."""
    for d in ds:
        if (d.uri is not None or d.mime_type is not None or d._tags is not None or d._scores is not None
                or d.buffer is not None or d._blob is not None or d._chunks is not None or d._matches is not None):
            return True
    return False


def _encode_columns(view: tuple, frames: list) -> dict:
    """The body of Documents still held as columns: the same body their Documents would make."""
    cols, a, b = view
    n = b - a
    body: dict[str, Any] = {"n": n, "id": cols.ids[a:b]}
    if cols.text is not None:
        col = cols.text[a:b]
        if _some(col):
            body["text"] = col
    if not n:
        return body
    if cols.embedding is not None:
        body["embedding"] = {"stack": _array_spec(cols.embedding[a:b], frames)}
    if cols.blob is not None:
        body["blob"] = {"stack": _array_spec(cols.blob[a:b], frames)}
    return body


def _encode_docs(docs: Sequence[Document], frames: list) -> dict:
    if isinstance(docs, DocumentArray):
        view = docs._columns()
        if view is not None:
            return _encode_columns(view, frames)
    # one list comprehension per field (plain attribute reads: the fastest loop Python has), and a
    # field is left out when no Document sets it (list.count runs in C)
    ds = docs._docs if isinstance(docs, DocumentArray) else docs
    n = len(ds)
    body: dict[str, Any] = {"n": n, "id": [d.id for d in ds]}
    col = [d.text for d in ds]
    if _some(col):
        body["text"] = col
    rare = _sets_rare(ds)
    if rare:
        for key, attr in (("uri", "uri"), ("mime_type", "mime_type"), ("tags", "_tags"), ("scores", "_scores")):
            col = [getattr(d, attr) for d in ds]
            if col.count(None) != n:
                body[key] = col
        buffers = [d.buffer for d in ds]
        if buffers.count(None) != n:
            spec = []
            for b in buffers:
                if b is None:
                    spec.append(None)
                else:
                    frames.append(b)
                    spec.append(len(frames) - 1)
            body["buffer"] = spec
    stacked = docs.stacked_embeddings() if isinstance(docs, DocumentArray) else None
    if stacked is not None:  # rows of one matrix already: send it as is
        body["embedding"] = {"stack": _array_spec(stacked, frames)}
    else:
        col = [d._embedding for d in ds]
        if any(map(_is_set, col)):  # (not list.count: an array compared with None is an array)
            body["embedding"] = _encode_arrays(col, frames)
    if rare:
        col = [d._blob for d in ds]
        if any(map(_is_set, col)):
            body["blob"] = _encode_arrays(col, frames)
        nested = _nested([d._chunks for d in ds], frames)
        if nested is not None:
            body["chunks"] = nested
        nested = _nested([d._matches for d in ds], frames)
        if nested is not None:
            body["matches"] = nested
    return body


def encode_docs(docs: Sequence[Document]) -> list:
    """Documents -> ``[body, *arrays]`` frames."""
    frames: list = []
    try:
        body = orjson.dumps(_encode_docs(docs, frames), option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        bad = next((d.id for d in docs if d._tags and not _jsonable(d._tags)), None)
        raise BadDocument(f"tags must be JSON-serialisable: {exc}", bad) from exc
    return [body, *frames]


def _jsonable(value: Any) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        return True
    except TypeError:
        return False


def _array_from(spec: list, frames: Sequence[Frame]) -> np.ndarray:
    idx, dtype, shape = spec
    return np.frombuffer(frames[idx], dtype=np.dtype(dtype)).reshape(shape)


_COLUMNS = frozenset(("n", "id", "text", "embedding", "blob"))


def _decode_columns(body: dict, frames: Sequence[Frame]) -> DocumentArray | None:
    """Documents of ids, texts and stacked arrays only (most batches): kept as columns, so the
    receiver builds Document objects only if it asks for one (see :class:`DocumentArray`)."""
    if not _COLUMNS.issuperset(body):
        return None
    n = body["n"]
    ids = body.get("id")
    if not isinstance(ids, list) or len(ids) != n:
        return None
    cols = _Columns(ids)
    text = body.get("text")
    if text is not None:
        if not isinstance(text, list) or len(text) != n:
            return None
        cols.text = text
    for key in ("embedding", "blob"):
        enc = body.get(key)
        if enc is None:
            continue
        if "stack" not in enc:
            return None
        m = _array_from(enc["stack"], frames)
        if len(m) != n:
            return None
        setattr(cols, key, m)
    return DocumentArray._of_columns(cols)


def _decode_docs(body: dict, frames: Sequence[Frame]) -> DocumentArray:
    lazy = _decode_columns(body, frames)
    if lazy is not None:
        return lazy
    return _decode_documents(body, frames)


def _decode_documents(body: dict, frames: Sequence[Frame]) -> DocumentArray:
    """Any body -> Document objects, built at once."""
    n = body["n"]
    ids = body.get("id") or []
    new = Document.__new__
    docs = []
    for i in range(n):
        d = new(Document)
        d.id = ids[i]
        d.text = d.uri = d.mime_type = d.buffer = None
        d._blob = d._embedding = d._tags = d._chunks = d._matches = d._scores = None
        docs.append(d)
    for key in ("text", "uri", "mime_type"):
        col = body.get(key)
        if col is not None:
            for d, v in zip(docs, col):
                setattr(d, key, v)
    for key, attr in (("tags", "_tags"), ("scores", "_scores")):
        col = body.get(key)
        if col is not None:
            for d, v in zip(docs, col):
                setattr(d, attr, v)
    buf = body.get("buffer")
    if buf is not None:
        for d, idx in zip(docs, buf):
            if idx is not None:
                d.buffer = bytes(frames[idx])
    da = DocumentArray()
    da._docs = docs
    for key, attr in (("embedding", "_embedding"), ("blob", "_blob")):
        enc = body.get(key)
        if enc is None:
            continue
        if "stack" in enc:
            m = _array_from(enc["stack"], frames)
            rows = list(m)
            for d, row in zip(docs, rows):
                setattr(d, attr, row)
            if key == "embedding":
                da._emb_matrix, da._emb_rows = m, rows
        else:
            for d, spec in zip(docs, enc["each"]):
                if spec is not None:
                    setattr(d, attr, _array_from(spec, frames))
    for key, attr in (("chunks", "_chunks"), ("matches", "_matches")):
        nested = body.get(key)
        if nested is None:
            continue
        flat = _decode_docs(nested["docs"], frames)._docs
        pos = 0
        for d, c in zip(docs, nested["counts"]):
            if c:
                sub = DocumentArray()
                sub._docs = flat[pos:pos + c]
                setattr(d, attr, sub)
                pos += c
    return da


def decode_docs(frames: Sequence[Frame]) -> DocumentArray:
    """``[body, *arrays]`` frames -> Documents (arrays are read-only views of the frames)."""
    try:
        body = _loads(frames[0])
        return _decode_docs(body, frames[1:])
    except (orjson.JSONDecodeError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise BadInput(f"malformed message body: {exc}") from exc


class Message:
    """One request or response: a decoded header plus Documents decoded only when asked for.

    ``frames()`` re-uses the received body and array frames unless ``docs`` was read or set,
    so a Pea that only forwards never pays for decoding and re-encoding.
    """

    __slots__ = ("header", "_raw", "_docs")

    def __init__(self, header: dict, docs: DocumentArray | None = None, raw: list | None = None):
        self.header = header
        self._docs = docs
        self._raw = raw if docs is None else None
        if docs is None and raw is None:
            self._raw = [_EMPTY_BODY]

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> Message:
        if len(frames) < 2:
            raise BadInput(f"a message needs at least 2 frames, got {len(frames)}")
        try:
            header = _loads(frames[0])
        except orjson.JSONDecodeError as exc:
            raise BadInput(f"malformed message header: {exc}") from exc
        if not isinstance(header, dict):
            raise BadInput("malformed message header: not an object")
        return cls(header, raw=list(frames[1:]))

    @property
    def docs(self) -> DocumentArray:
        if self._docs is None:
            self._docs = decode_docs(self._raw)
            self._raw = None
        return self._docs

    @docs.setter
    def docs(self, value: DocumentArray) -> None:
        self._docs = value if isinstance(value, DocumentArray) else DocumentArray(value)
        self._raw = None

    @property
    def decoded(self) -> bool:
        return self._docs is not None

    def body_frames(self) -> list:
        if self._docs is not None:
            return encode_docs(self._docs)
        return self._raw

    def frames(self) -> list:
        return [orjson.dumps(self.header), *self.body_frames()]

    # convenience for headers
    @property
    def request_id(self) -> str:
        return self.header.get("rid", "")

    @property
    def endpoint(self) -> str:
        return self.header.get("ep", "/")

    @property
    def parameters(self) -> dict:
        return self.header.setdefault("params", {})

    @property
    def error(self) -> dict | None:
        return self.header.get("err")


def new_header(request_id: str, endpoint: str, parameters: dict | None = None) -> dict:
    if not endpoint.startswith("/"):
        endpoint = "/" + endpoint
    return {"rid": request_id, "ep": endpoint, "params": parameters or {}}


def doc_count(msg: Message) -> int:
    """How many Documents a message carries, without decoding them."""
    if msg._docs is not None:
        return len(msg._docs)
    raw = msg._raw[0]
    # the body always starts with {"n":<count>,... (written first by _encode_docs)
    head = bytes(memoryview(raw)[:32])
    try:
        return int(head[5:head.index(b",")] if b"," in head else head[5:head.index(b"}")])
    except ValueError:
        return len(decode_docs(msg._raw))

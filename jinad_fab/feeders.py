"""Feeders: generators that turn arrays, CSV, NDJSON and files into Documents, lazily.

Each yields Documents one at a time, so a Flow (``Flow.index_csv(...)`` and friends) can stream
a file of any size in requests of ``request_size``. Column/key names that are Document fields
(``id``, ``text``, ``uri``, ``mime_type``, ``tags``, ``embedding``, ``blob``, ``buffer``) fill those
fields; ``field_resolver`` renames keys first (``{'pic_url': 'uri'}``); every other key goes
into ``tags``.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import mimetypes
import os
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np

from .document import Document
from .errors import BadInput

__all__ = ["from_ndarray", "from_csv", "from_ndjson", "from_files", "from_lines"]

_SCALAR_FIELDS = ("id", "text", "uri", "mime_type")
_TEXT_MIME = ("application/json", "application/xml", "application/javascript", "application/x-yaml",
              "application/yaml", "application/x-sh", "application/sql", "image/svg+xml")


def _limit(items: Iterable[Any], size: int | None, sampling_rate: float | None, seed: int | None) -> Iterator[Any]:
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadInput(f"size must be a non-negative integer, got {size!r}")
    if sampling_rate is not None and not (0 < sampling_rate <= 1):
        raise BadInput(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    rng = random.Random(seed)
    n = 0
    for item in items:
        if size is not None and n >= size:
            return
        if sampling_rate is not None and rng.random() >= sampling_rate:
            continue
        n += 1
        yield item


def from_ndarray(array: Any, axis: int = 0, field: str = "embedding", size: int | None = None,
                 shuffle: bool = False, seed: int | None = None) -> Iterator[Document]:
    """One Document per row (slice along `axis`), the row set as its `embedding` (or `blob`)."""
    if field not in ("embedding", "blob"):
        raise BadInput(f"field must be 'embedding' or 'blob', got {field!r}")
    arr = np.asarray(array)
    if arr.ndim < 1 or arr.dtype == object or arr.dtype.kind in "USV":
        raise BadInput(f"from_ndarray takes a numeric array of at least one dimension, got {arr.dtype}{arr.shape}")
    arr = np.moveaxis(arr, axis, 0)
    order = np.arange(len(arr))
    if shuffle:
        np.random.default_rng(seed).shuffle(order)
    for i in _limit(order, size, None, None):
        yield Document(**{field: arr[i]})


def _document(record: dict, field_resolver: dict | None, where: str) -> Document:
    if field_resolver:
        record = {field_resolver.get(k, k): v for k, v in record.items()}
    fields: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    for k, v in record.items():
        if k in _SCALAR_FIELDS:
            if v is not None and v != "":
                fields[k] = str(v)
        elif k == "tags" and isinstance(v, dict):
            tags.update(v)
        elif k in ("embedding", "blob"):
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError as exc:
                    raise BadInput(f"{where}: {k} must be a JSON list of numbers, got {v[:40]!r}") from exc
            fields[k] = np.asarray(v, dtype=np.float32) if _numbers(v) else v
        elif k == "buffer":
            fields[k] = v.encode() if isinstance(v, str) else v
        elif k is None:  # csv: a row longer than the header
            tags["_extra"] = v
        else:
            tags[k] = v
    if tags:
        fields["tags"] = tags
    return Document(**fields)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


@contextmanager
def _open_text(fp: str | os.PathLike | IO) -> Iterator[IO[str]]:
    if isinstance(fp, (str, os.PathLike)):
        try:
            fh = open(fp, encoding="utf-8", newline="")
        except OSError as exc:
            raise BadInput(f"cannot open {os.fspath(fp)!r}: {exc.strerror}") from exc
        with fh:
            yield fh
    elif isinstance(fp, (io.RawIOBase, io.BufferedIOBase)) or "b" in getattr(fp, "mode", ""):
        yield io.TextIOWrapper(fp, encoding="utf-8", newline="")
    else:
        yield fp


def from_lines(lines: Iterable[str] | None = None, filepath: str | os.PathLike | None = None,
               size: int | None = None, sampling_rate: float | None = None, seed: int | None = None,
               line_format: str = "text") -> Iterator[Document]:
    """One Document per line, its text the line without the newline (Jina's ``index_lines``).

    Give `lines` (any iterable of str) or `filepath`, not both. ``line_format='json'`` or ``'csv'``
    (Jina 2.x) is refused naming `from_ndjson` / `from_csv`, which parse each line into fields.
    """
    if line_format in ("json", "csv"):
        new = {"json": "index_ndjson(fp)", "csv": "index_csv(fp)"}[line_format]
        raise BadInput(f"line_format={line_format!r} is Jina 2.x; here each line becomes one text Document: "
                       f"use {new} to parse lines into fields")
    if line_format != "text":
        raise BadInput(f"line_format must be 'text', got {line_format!r}")
    if (lines is None) == (filepath is None):
        raise BadInput("give `lines` or `filepath` (one of them)")
    if isinstance(lines, str):
        raise BadInput("lines must be an iterable of str, got a single str; wrap it: lines=[text]")
    if filepath is not None:
        with _open_text(filepath) as fh:
            for line in _limit(fh, size, sampling_rate, seed):
                yield Document(text=line.rstrip("\r\n"))
        return
    for line in _limit(lines, size, sampling_rate, seed):
        if not isinstance(line, str):
            raise BadInput(f"lines must be str, got {type(line).__name__}")
        yield Document(text=line.rstrip("\r\n"))


def from_csv(fp: str | os.PathLike | IO, field_resolver: dict[str, str] | None = None, size: int | None = None,
             sampling_rate: float | None = None, seed: int | None = None, dialect: str | csv.Dialect = "excel",
             ) -> Iterator[Document]:
    """One Document per CSV row; the first row names the columns."""
    with _open_text(fp) as fh:
        reader = csv.DictReader(fh, dialect=dialect)
        for row in _limit(reader, size, sampling_rate, seed):
            yield _document(row, field_resolver, f"CSV line {reader.line_num}")


def from_ndjson(fp: str | os.PathLike | IO, field_resolver: dict[str, str] | None = None,
                size: int | None = None, sampling_rate: float | None = None, seed: int | None = None,
                ) -> Iterator[Document]:
    """One Document per line of newline-delimited JSON objects (blank lines are skipped)."""
    with _open_text(fp) as fh:
        lines = ((n, line) for n, line in enumerate(fh, 1) if line.strip())
        for n, line in _limit(lines, size, sampling_rate, seed):
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise BadInput(f"NDJSON line {n}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise BadInput(f"NDJSON line {n}: expected an object, got {type(record).__name__}")
            yield _document(record, field_resolver, f"NDJSON line {n}")


def _is_text(mime: str | None) -> bool:
    return mime is not None and (mime.startswith("text/") or mime in _TEXT_MIME or mime.endswith("+json"))


def from_files(patterns: str | Iterable[str], recursive: bool = True, size: int | None = None,
               sampling_rate: float | None = None, seed: int | None = None, read_mode: str | None = "auto",
               ) -> Iterator[Document]:
    """One Document per file matching the glob patterns: `uri` and `mime_type` set, and the content
    read by mime type (`auto`: text/* and textual application types as `text`, anything else as
    `buffer`), or always as text (``'r'``), always as bytes (``'rb'``) or not at all (None)."""
    if read_mode not in ("auto", "r", "rb", None):
        raise BadInput(f"read_mode must be 'auto', 'r', 'rb' or None, got {read_mode!r}")
    if isinstance(patterns, str):
        patterns = [patterns]

    def paths() -> Iterator[str]:
        seen: set[str] = set()
        for pattern in patterns:
            for path in sorted(glob.glob(os.path.expanduser(pattern), recursive=recursive)):
                if os.path.isfile(path) and path not in seen:
                    seen.add(path)
                    yield path

    for path in _limit(paths(), size, sampling_rate, seed):
        mime = mimetypes.guess_type(path)[0]
        doc = Document(uri=path, mime_type=mime)
        mode = ("r" if _is_text(mime) else "rb") if read_mode == "auto" else read_mode
        if mode == "r":
            with open(path, encoding="utf-8", errors="replace") as fh:
                doc.text = fh.read()
        elif mode == "rb":
            with open(path, "rb") as fh:
                doc.buffer = fh.read()
        yield doc

"""The demos' encoder Executors, and the functions that fit their models.

This file is handed to Pea processes by path (``Flow.add(uses=ProjectionEncoder)``), so it imports
only public names, absolutely. Each model is fitted once in the command's process, on the data
being indexed, and saved in the workspace as plain arrays (``.npz``, JSON): no pickles, so a Pea
loads exactly numbers and words. Every replica then loads the same file and encodes identically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from jinad_fab import DocumentArray, Executor, requests

# TF-IDF settings, shared by fitting and encoding: words and in-word character n-grams, so
# "installing" still meets "install" and a typo costs one n-gram, not the whole word.
_WORD = {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "lowercase": True,
         "token_pattern": r"(?u)\b[\w\-]+\b"}
_CHAR = {"analyzer": "char_wb", "ngram_range": (3, 5), "sublinear_tf": True, "lowercase": True}


# --------------------------------------------------------------------------- images: a projection
def fit_projection(X: np.ndarray, dim: int, path: str) -> dict[str, Any]:
    """Centre the rows of X and keep their top `dim` principal directions (numpy's SVD); save them."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"need a (n >= 2, features) matrix, got shape {X.shape}")
    if not 1 <= dim <= X.shape[1]:
        raise ValueError(f"dim must be between 1 and {X.shape[1]}, got {dim}")
    mean = X.mean(axis=0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    components = vt[:dim]
    explained = float((s[:dim] ** 2).sum() / max((s ** 2).sum(), 1e-12))
    np.savez(path, mean=mean.astype(np.float32), components=components.astype(np.float32))
    return {"dim": dim, "features": X.shape[1], "explained_variance": explained}


def project(X: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    return (X - mean) @ components.T


class ProjectionEncoder(Executor):
    """Embeds each Document's ``blob`` (any shape, flattened) with a projection fitted by
    :func:`fit_projection`; ``uses_with``: ``model`` (the ``.npz`` path)."""

    def __init__(self, model: str, **kwargs: Any):
        super().__init__(**kwargs)
        with np.load(model) as data:
            self.mean = data["mean"]
            self.components = data["components"]

    @requests
    def encode(self, docs: DocumentArray) -> None:
        if not docs:
            return
        blobs = [d.blob for d in docs]
        missing = [d.id for d, b in zip(docs, blobs) if b is None]
        if missing:
            raise ValueError(f"{len(missing)} Document(s) have no blob to encode, e.g. {missing[0]!r}")
        docs.embeddings = project(np.stack([np.asarray(b).ravel() for b in blobs]), self.mean, self.components)


# --------------------------------------------------------------------------- text: TF-IDF + LSA
def _vectorizers(vocab: Sequence[dict[str, int]] | None = None, idf: Sequence[np.ndarray] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    out = []
    for i, params in enumerate((_WORD, _CHAR)):
        vec = TfidfVectorizer(**params, vocabulary=None if vocab is None else vocab[i])
        if idf is not None:
            vec.idf_ = idf[i]
        out.append(vec)
    return out


def _tfidf(vecs, texts: Sequence[str], fit: bool = False):
    from scipy.sparse import hstack

    mats = [v.fit_transform(texts) if fit else v.transform(texts) for v in vecs]
    return hstack(mats).tocsr()


def _normalise(E: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    return (E / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def fit_tfidf(texts: Sequence[str], dim: int, path: str) -> dict[str, Any]:
    """Fit word and character TF-IDF on `texts` and reduce to `dim` with an SVD (LSA); save the
    vocabularies as JSON and the idf weights and SVD basis as ``.npz``, both next to `path`.

    The SVD is numpy's on the dense matrix: right for a corpus of some thousands of texts."""
    vecs = _vectorizers()
    M = _tfidf(vecs, texts, fit=True).toarray()
    _, s, vt = np.linalg.svd(M, full_matrices=False)
    dim = int(min(dim, len(s)))
    vocab = [{t: int(i) for t, i in v.vocabulary_.items()} for v in vecs]
    with open(path + ".json", "w", encoding="utf-8") as fh:
        json.dump({"vocabulary": vocab}, fh, ensure_ascii=False)
    np.savez(path + ".npz", idf_word=vecs[0].idf_, idf_char=vecs[1].idf_, components=vt[:dim].astype(np.float32))
    return {"dim": dim, "features": int(M.shape[1]),
            "explained_variance": float((s[:dim] ** 2).sum() / max((s ** 2).sum(), 1e-12))}


class TextModel:
    """A fitted TF-IDF + SVD model loaded from the files :func:`fit_tfidf` wrote."""

    def __init__(self, path: str):
        with open(path + ".json", encoding="utf-8") as fh:
            vocab = json.load(fh)["vocabulary"]
        with np.load(path + ".npz") as data:
            idf = [data["idf_word"], data["idf_char"]]
            self.components = data["components"]
        self.vecs = _vectorizers(vocab, idf)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _normalise(_tfidf(self.vecs, texts) @ self.components.T)


class TextEncoder(Executor):
    """Embeds each Document's ``text`` with a model from :func:`fit_tfidf` (unit vectors, so the
    index's inner product is the cosine similarity); ``uses_with``: ``model`` (path prefix)."""

    def __init__(self, model: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = TextModel(model)

    @requests
    def encode(self, docs: DocumentArray) -> None:
        if not docs:
            return
        docs.embeddings = self.model.encode([d.text or "" for d in docs])


"""The demos' encoder Executors, and the functions that fit their models.

This file is handed to Pea processes by path (``Flow.add(uses=ProjectionEncoder)``), so it imports
only public names, absolutely. Each model is fitted once in the command's process, on the data
being indexed, and saved in the workspace as plain arrays (``.npz``, JSON): no pickles, so a Pea
loads exactly numbers and words. Every replica then loads the same file and encodes identically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from jinad_fab import DocumentArray, Executor, requests


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


# --------------------------------------------------------------------------- text: TF-IDF over the FAQ
# Words are normalised before counting, the same way for questions, answers and queries: lower case,
# a few phrases rewritten to the corpus's own word for them, a light suffix stripping ("installed",
# "installing" -> "install"), then single words mapped to the term the FAQ uses ("server" -> "host").
# Stop words carry no weight: a query made only of them ("how do I cook dinner") matches nothing,
# which is what lets the page say "no good match" instead of showing three unrelated answers.
PHRASES: tuple[tuple[str, str], ...] = (
    # installing the daemon on hosts is what the FAQ calls provisioning (`jinad` alone, not `jinad-fab`)
    (r"\b(?:install|set\s*up|deploy)\w*\s+(?:the\s+|a\s+)?(?:daemons?|jinad)\b(?!-)", "provision jinad"),
    (r"\broll(?:ing)?\s*back\b", "rollback"),
)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "server": ("host",), "machine": ("host",), "node": ("host",), "box": ("host",), "computer": ("host",),
    "daemon": ("daemon", "jinad"), "setup": ("install",), "deploy": ("provision",), "replica": ("parallel",),
    "view": ("follow",), "see": ("follow",), "watch": ("follow",), "tail": ("follow",),
    "error": ("exception",), "throw": ("raise",), "crash": ("exception",), "fail": ("exception",),
    "kill": ("stop",), "remove": ("delete",), "erase": ("delete",),
    "graph": ("plot",), "picture": ("plot",), "draw": ("plot",), "diagram": ("plot",),
    "card": ("gpu",), "cuda": ("gpu",), "nvidia": ("gpu",), "container": ("docker",),
}
STOP_WORDS = frozenset(
    "a an the of to in on at for from my i me we our you your do does did doing how can could should would "
    "what what's whats which who why when where is are was be been it its and or with by this that these those "
    "there get got want need please some any s".split())
_WORD_RE = re.compile(r"[a-z0-9_][a-z0-9_\-.]*[a-z0-9_]|[a-z0-9_]")
_PHRASES = tuple((re.compile(p), r) for p, r in PHRASES)
ANSWER_WEIGHT = 0.5  # an indexed item is its question plus half its answer (questions say more per word)


def _stem(word: str) -> str:
    for suffix, keep in (("ing", 4), ("ed", 4), ("es", 5), ("s", 3)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """The counted terms of a text: its normalised content words and their adjacent pairs."""
    text = text.lower()
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    words: list[str] = []
    for raw in _WORD_RE.findall(text):
        if raw in STOP_WORDS:
            continue
        stem = _stem(raw)
        words.extend(w for w in SYNONYMS.get(stem, (stem,)) if w not in STOP_WORDS)
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def _vectorizer(vocabulary: dict[str, int] | None = None, idf: np.ndarray | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer=terms, sublinear_tf=True, vocabulary=vocabulary)
    if idf is not None:
        vec.idf_ = idf
    return vec


def _normalise(E: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    return (E / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _items(vec, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """Unit rows: each question's TF-IDF vector plus ANSWER_WEIGHT times its answer's."""
    q = _normalise(vec.transform(list(questions)).toarray())
    a = _normalise(vec.transform(list(answers)).toarray())
    return _normalise(q + ANSWER_WEIGHT * a)


def fit_tfidf(questions: Sequence[str], answers: Sequence[str], dim: int, path: str) -> dict[str, Any]:
    """Fit TF-IDF (sublinear tf, word pairs, the normalisation above) on the questions and answers;
    keep an orthonormal basis of the indexed items' span, at most `dim` wide; save the vocabulary as
    JSON and the idf weights and basis as ``.npz`` next to `path`.

    When `dim` is at least the number of items, nothing is lost: a query's inner product with an
    item is exactly their cosine in the full TF-IDF space (the items lie in the span, and a query is
    normalised before it is projected). Smaller `dim` is classic LSA."""
    if len(questions) != len(answers) or not questions:
        raise ValueError("need as many answers as questions, and at least one of each")
    vec = _vectorizer()
    vec.fit(list(questions) + list(answers))
    items = _items(vec, questions, answers)
    _, s, vt = np.linalg.svd(items, full_matrices=False)
    rank = int((s > 1e-6 * s.max()).sum())
    dim = int(min(dim, rank))
    with open(path + ".json", "w", encoding="utf-8") as fh:
        json.dump({"vocabulary": {t: int(i) for t, i in vec.vocabulary_.items()}}, fh, ensure_ascii=False)
    np.savez(path + ".npz", idf=vec.idf_, components=vt[:dim].astype(np.float32))
    return {"dim": dim, "features": len(vec.vocabulary_),
            "explained_variance": float((s[:dim] ** 2).sum() / max((s ** 2).sum(), 1e-12))}


class TextModel:
    """A fitted model loaded from the files :func:`fit_tfidf` wrote."""

    def __init__(self, path: str):
        with open(path + ".json", encoding="utf-8") as fh:
            vocab = json.load(fh)["vocabulary"]
        with np.load(path + ".npz") as data:
            self.vec = _vectorizer(vocab, data["idf"])
            self.components = data["components"]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Queries: unit TF-IDF vectors, projected (not re-normalised, so scores stay cosines)."""
        return (_normalise(self.vec.transform(list(texts)).toarray()) @ self.components.T).astype(np.float32)

    def encode_items(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """Indexed items: question plus weighted answer, as :func:`fit_tfidf` fitted them."""
        return (_items(self.vec, questions, answers) @ self.components.T).astype(np.float32)


class TextEncoder(Executor):
    """Embeds Documents with a model from :func:`fit_tfidf`; the index's inner product is then the
    cosine similarity. ``/index``: each Document is a question (``text``) with its answer in
    ``tags["answer"]``; any other endpoint embeds ``text`` as a query. ``uses_with``: ``model``."""

    def __init__(self, model: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = TextModel(model)

    @requests(on="/index")
    def encode_items(self, docs: DocumentArray) -> None:
        if not docs:
            return
        docs.embeddings = self.model.encode_items([d.text or "" for d in docs],
                                                  [str(d.tags.get("answer", "")) for d in docs])

    @requests
    def encode(self, docs: DocumentArray) -> None:
        if not docs:
            return
        docs.embeddings = self.model.encode([d.text or "" for d in docs])

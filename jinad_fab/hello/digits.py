"""The 8x8 handwritten digits that scikit-learn ships inside its package (1,797 labelled images).

The CSV is read straight from scikit-learn's installed files, found without importing scikit-learn
(which costs seconds on a small machine); when the file is not where it used to be, the public
``sklearn.datasets.load_digits`` is the fallback. Either way nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os

import numpy as np

from ..errors import BadConfig


@dataclasses.dataclass(frozen=True)
class Digits:
    images: np.ndarray  # (n, 8, 8) uint8, values 0..16
    labels: np.ndarray  # (n,) int


@dataclasses.dataclass(frozen=True)
class Split:
    """Row numbers into :class:`Digits`: the indexed set and the held-out queries."""

    index: np.ndarray
    queries: np.ndarray


def _bundled_csv() -> str | None:
    spec = importlib.util.find_spec("sklearn")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(base, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            return path
    return None


def load_digits() -> Digits:
    path = _bundled_csv()
    if path is not None:
        with gzip.open(path, "rt") as fh:
            data = np.loadtxt(fh, delimiter=",", dtype=np.float32)
        images, labels = data[:, :-1], data[:, -1]
    else:
        try:
            from sklearn.datasets import load_digits as _sk_load
        except ImportError as exc:
            raise BadConfig("the digits come with scikit-learn; try: pip install 'jinad-fab[hello]'") from exc
        bunch = _sk_load()
        images, labels = bunch.data, bunch.target
    return Digits(images=np.asarray(images, dtype=np.uint8).reshape(-1, 8, 8),
                  labels=np.asarray(labels, dtype=np.int64))


def split(n: int, n_queries: int, seed: int) -> Split:
    """A deterministic shuffle by `seed`: the first `n_queries` rows are queries, the rest indexed."""
    if not 1 <= n_queries < n:
        raise BadConfig(f"the number of queries must be between 1 and {n - 1}, got {n_queries}")
    order = np.random.default_rng(seed).permutation(n)
    return Split(index=np.sort(order[n_queries:]), queries=order[:n_queries])

"""Precision and recall at k against the labels, and the same for a random ranking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def precision_recall(query_labels: np.ndarray, match_labels: Sequence[Sequence[int]], index_labels: np.ndarray,
                     k: int) -> dict[str, float]:
    """Means over queries. precision@k: right labels among the first k matches (a query with fewer
    than k matches counts the missing ones as wrong); recall@k: right labels among the first k over
    all indexed items with the query's label; precision@1: the best match is right."""
    counts = np.bincount(index_labels, minlength=int(max(index_labels.max(), query_labels.max())) + 1)
    p, r, p1 = [], [], []
    for label, labels in zip(query_labels.tolist(), match_labels):
        hits = np.asarray(list(labels)[:k]) == label
        p.append(hits.sum() / k)
        r.append(hits.sum() / max(counts[label], 1))
        p1.append(float(hits[0]) if len(hits) else 0.0)
    return {f"precision@{k}": float(np.mean(p)), f"recall@{k}": float(np.mean(r)), "precision@1": float(np.mean(p1))}


def random_baseline(query_labels: np.ndarray, index_labels: np.ndarray, k: int, seed: int) -> dict[str, float]:
    """The same metrics for k index items drawn at random (without replacement) for every query."""
    rng = np.random.default_rng(seed)
    k_eff = min(k, len(index_labels))
    picks = [index_labels[rng.choice(len(index_labels), size=k_eff, replace=False)] for _ in query_labels]
    return precision_recall(query_labels, picks, index_labels, k)


def recall_ceiling(query_labels: np.ndarray, index_labels: np.ndarray, k: int) -> float:
    """The best recall@k any ranking can reach: k matches cannot find more than k of the (often many
    more) indexed items that share a query's label."""
    counts = np.bincount(index_labels, minlength=int(max(index_labels.max(), query_labels.max())) + 1)
    per_query = [min(k, int(counts[label])) / max(int(counts[label]), 1) for label in query_labels.tolist()]
    return float(np.mean(per_query))

"""Joining the parts of one request: fan-in after `needs`, and the answers of several shards.

Parts of one request either carry the same Documents (they were fanned out to several Pods)
or disjoint slices of them (a shard head split the request by id, recording each slice's
original positions in ``header["pos"]``). Both cases are one operation: union by id, keeping
the first occurrence's fields and appending the others' matches and chunks. When the header
carries ``merge: {"score": name, "ascending": bool, "top_k": k}`` (set by an Executor such as
``_index``), each Document's merged matches are re-ranked by that score and cut to k.
"""

from __future__ import annotations

from ..document import DocumentArray
from ..wire import Message


def merge_parts(parts: list[Message], upstream: list[str] | None = None) -> Message:
    """Join the parts of one request. Parts are taken in the order of `upstream` (the Pods this one
    needs, as declared), then by sender name, so a join gives the same answer whatever arrived first."""
    if len(parts) == 1:
        parts[0].header.pop("pos", None)  # the only part left of a split whose other shards are missing
        return parts[0]
    rank = {name: i for i, name in enumerate(upstream or [])}

    def key(p: Message) -> tuple:
        src = p.header.get("src") or ""
        return (rank.get(src.split("/", 1)[0], len(rank)), src)

    parts = sorted(parts, key=key)
    header = dict(parts[0].header)
    header.pop("pos", None)
    header.pop("src", None)
    errors = [p.header["err"] for p in parts if p.header.get("err")]
    if errors:
        header["err"] = errors[0]
        return Message(header, raw=parts[0]._raw if not parts[0].decoded else None,
                       docs=parts[0].docs if parts[0].decoded else None)
    for p in parts[1:]:
        if "merge" in p.header and "merge" not in header:
            header["merge"] = p.header["merge"]
    positioned = all("pos" in p.header for p in parts)
    if positioned:
        # sized by the highest position: a missing shard's slice leaves holes (see .shards)
        slots: list = [None] * (1 + max((max(p.header["pos"], default=-1) for p in parts), default=-1))
        for p in parts:
            for pos, d in zip(p.header["pos"], p.docs):
                slots[pos] = d
        merged = DocumentArray([d for d in slots if d is not None])
    else:
        by_id: dict = {}
        order = []
        for p in parts:
            for d in p.docs:
                seen = by_id.get(d.id)
                if seen is None:
                    by_id[d.id] = d
                    order.append(d)
                    continue
                if d._matches:
                    seen.matches.extend(d._matches)
                if d._chunks:
                    seen.chunks.extend(d._chunks)
                if d._tags:
                    seen.tags.update({k: v for k, v in d._tags.items() if k not in seen.tags})
                if d._scores:
                    seen.scores.update({k: v for k, v in d._scores.items() if k not in seen.scores})
                if seen._embedding is None and d._embedding is not None:
                    seen._embedding = d._embedding
        merged = DocumentArray(order)
    rank = header.get("merge")
    if rank:
        _rerank(merged, rank)
    return Message(header, docs=merged)


def _rerank(docs: DocumentArray, rank: dict) -> None:
    score, ascending, top_k = rank.get("score"), rank.get("ascending", True), rank.get("top_k")
    if not score:
        return
    missing = float("inf") if ascending else float("-inf")
    for d in docs:
        if not d._matches:
            continue
        ms = sorted(d._matches, key=lambda m: (m._scores or {}).get(score, missing), reverse=not ascending)
        if top_k is not None:
            ms = ms[: int(top_k)]
        d.matches = ms

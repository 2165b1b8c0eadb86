"""Shards known to be gone, and what that means for each request (issue 16).

A shard of a Pod is *missing* when no replica of it is left and none is coming: its Pea died and
its Pod's restart policy starts no other (``restart: never``, or the restarts ran out), or the host
it ran on stopped answering (LOST) and it has no other host (an ``_index``: its data lives there).
Whoever owns the Flow tells the Gateway (ctrl ``shards``); the Gateway then decides, per request:

* a *read* (``/search`` and endpoints an Executor marks idempotent) is answered by the shards that
  are left, and its header names the missing ones: ``"missing_shards": ["idx/shard-1"]`` (replica set
  names, as :meth:`jinad_fab.runtime.pod.Pod.set_name` gives them). The header travels with the
  request: a shard head sends nothing to a missing shard (a read it splits by id hands that
  shard's Documents to the first shard left, so the answer keeps them all), and every join
  downstream of the Pod waits for that many parts fewer (:func:`parts_expected`);
* a *write* that needs a missing shard (``polling: all``, or a Document whose id hashes to it, see
  :func:`jinad_fab.runtime.pea.shard_of`) fails with PodDied naming the shard before any shard
  sees it, so nothing is half-applied and nothing is dropped silently. A write none of whose
  Documents belong to a missing shard goes through;
* a request for one Pod's Executors (``only``: a dump) needs all of that Pod's shards;
* when every shard of a Pod is missing, every request fails with PodDied naming them.

A shard that comes back (a restart, or its host answering again) is dropped from the missing set,
and answers are whole again, without the header.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

HEADER = "missing_shards"


def pod_of(set_name: str) -> str:
    """The Pod a replica set belongs to (``idx/shard-1`` -> ``idx``; Pod names hold no ``/``)."""
    return set_name.split("/", 1)[0]


def parts_expected(num_parts: int, upstream: list[str] | set[str], header: dict) -> int:
    """How many parts of a request a join waits for: one fewer per missing shard of a Pod it needs."""
    missing = header.get(HEADER)
    if not missing:
        return num_parts
    return num_parts - sum(1 for s in missing if pod_of(s) in upstream)


def shard_of(doc_id: str, shards: int) -> int:
    """The shard a Document id belongs to: stable across processes and restarts."""
    return zlib.crc32(doc_id.encode("utf-8")) % shards


class MissingShards:
    """The Gateway's view: set name -> ``{"pod", "shard", "shards", "polling", "detail", "why"}``."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self.sets)

    def __contains__(self, name: str) -> bool:
        return name in self.sets

    def mark(self, sets: dict[str, dict]) -> list[str]:
        added = []
        for name, info in sets.items():
            if name not in self.sets:
                added.append(name)
            self.sets[name] = {"pod": info.get("pod") or pod_of(name), "shard": int(info.get("shard") or 0),
                               "shards": int(info.get("shards") or 1), "polling": dict(info.get("polling") or {}),
                               "detail": str(info.get("detail") or "no replica of it is left"),
                               "why": info.get("why") or "dead"}
        return added

    def back(self, names: list[str] | set[str], *, why: str | None = None) -> list[str]:
        """Drop the named sets (only those missing for ``why``, when given)."""
        gone = [n for n in names if n in self.sets and (why is None or self.sets[n]["why"] == why)]
        for n in gone:
            del self.sets[n]
        return gone

    def view(self) -> dict[str, dict]:
        return {n: {k: v for k, v in info.items() if k != "polling"} for n, info in self.sets.items()}

    def check(self, header: dict, body: list, reads: set[str]) -> tuple[list[str], dict | None]:
        """For one request: the missing shards to name in its header, or the error that fails it."""
        if not self.sets:
            return [], None
        by_pod: dict[str, list[str]] = {}
        for name, info in self.sets.items():
            by_pod.setdefault(info["pod"], []).append(name)
        for pod, names in by_pod.items():
            if len(names) >= self.sets[names[0]]["shards"]:
                return [], self._error(pod, sorted(names), "every shard of the Pod is missing")
        ep = header.get("ep") or "/"
        only = header.get("only")
        if only and only in by_pod:
            return [], self._error(only, sorted(by_pod[only]), f"a request for Pod {only!r} needs all of its shards")
        if ep not in reads:
            needed = self._needed_by_write(ep, body)
            if needed:
                pod = self.sets[needed[0]]["pod"]
                return [], self._error(pod, needed, f"{ep} needs {'it' if len(needed) == 1 else 'them'}")
        return sorted(self.sets), None

    def _needed_by_write(self, ep: str, body: list) -> list[str]:
        ids: list[str] | None = None
        needed = []
        for name, info in sorted(self.sets.items()):
            polling = info["polling"]
            mode = polling.get(ep) or polling.get("*") or "id"
            if mode == "all" or info["shards"] <= 1:
                needed.append(name)
                continue
            if ids is None:
                ids = _doc_ids(body)
            if ids is None or any(shard_of(i, info["shards"]) == info["shard"] for i in ids):
                needed.append(name)
        return needed

    def _error(self, pod: str, names: list[str], why: str) -> dict:
        details = "; ".join(f"{n}: {self.sets[n]['detail']}" for n in names)
        return {"pod": pod, "type": "PodDied", "shards": names,
                "msg": f"shard{'s' if len(names) > 1 else ''} {', '.join(names)} missing ({details}); {why}"}


def _doc_ids(body: list) -> list[str] | None:
    """The Document ids of a request's body frames, read from its JSON column (no array decoding);
    None when they cannot be read (the request is then taken to need every shard)."""
    if not body:
        return []
    frame = body[0]
    try:
        raw = frame.bytes if hasattr(frame, "bytes") else frame
        cols = orjson.loads(bytes(raw) if isinstance(raw, memoryview) else raw)
    except (orjson.JSONDecodeError, TypeError):
        return None
    ids = cols.get("id") if isinstance(cols, dict) else None
    if ids is None:
        return [] if isinstance(cols, dict) and not cols.get("n") else None
    return [str(i) for i in ids]

"""Where each Document of an ``_index`` store lives: id -> slot, kept in memory beside the vectors.

SQLite stays the store of Documents (by slot). Finding a slot by id through a unique index in SQLite
cost most of an ``/index`` request when ids are random (as for Documents made without one): every
request inserted into pages all over that index and wrote each of them to the WAL again. Here an
open-addressing hash table in two numpy arrays does it instead:

* ``hashes[slot]``: 32 bits of the id's hash (Python's ``hash``, so never written to disk: this map
  is derived from SQLite when first needed in a process, and kept up to date by the writes after);
* ``table``: a power of two of int32 cells, at most half full, each a slot (``-1`` empty, ``-2`` a
  deleted slot's cell), found by linear probing from ``hash & (len(table) - 1)``. Half full keeps the
  runs of probed cells short, and every change or lookup of a batch takes as many numpy rounds as
  its longest run.

About 4 + 8 to 16 bytes per Document. A hash says *maybe*: the caller confirms a found slot by reading
that slot's id from SQLite (by primary key), so two ids that share a hash are never confused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["IdMap", "id_hashes"]

_EMPTY, _GONE = -1, -2


def id_hashes(ids: Sequence[str]) -> np.ndarray:
    """32 bits of each id's hash, as int64 (so that masks and comparisons need no casts)."""
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)) & 0xFFFFFFFF


class IdMap:
    """id hash -> candidate slots for the slots ``0 .. n - 1`` of one store."""

    def __init__(self, hashes: np.ndarray | None = None):
        self.n = 0
        self._hashes = np.zeros(0, dtype=np.uint32)
        self._table = np.full(16, _EMPTY, dtype=np.int32)
        self._used = 0  # cells holding a slot or a deleted slot's mark
        if hashes is not None and len(hashes):
            self.append(hashes)

    @property
    def nbytes(self) -> int:
        return self._hashes.nbytes + self._table.nbytes

    # ------------------------------------------------------------------ lookups
    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (i, slot) whose stored hash equals ``hashes[i]``: the candidates, in no order."""
        table, mask = self._table, len(self._table) - 1
        pos = hashes & mask
        pending = np.arange(len(hashes))
        found_i, found_slot = [], []
        while len(pending):
            cell = table[pos[pending]]
            held = cell >= 0
            i, slot = pending[held], cell[held]
            same = self._hashes[slot] == hashes[i]
            found_i.append(i[same])
            found_slot.append(slot[same])
            go_on = cell != _EMPTY  # a run of cells ends at an empty one
            pending = pending[go_on]
            pos[pending] = (pos[pending] + 1) & mask
        if not found_i:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(found_i), np.concatenate(found_slot).astype(np.int64)

    # ------------------------------------------------------------------ changes
    def append(self, hashes: np.ndarray) -> None:
        """The next ``len(hashes)`` slots hold Documents with these id hashes."""
        m = len(hashes)
        if self.n + m > len(self._hashes):
            grown = np.zeros(max(self.n + m, len(self._hashes) * 5 // 4, 1024), dtype=np.uint32)
            grown[: self.n] = self._hashes[: self.n]
            self._hashes = grown
        self._hashes[self.n:self.n + m] = hashes
        start, self.n = self.n, self.n + m
        if 2 * (self._used + m) > len(self._table):
            self._rebuild()
        else:
            self._place(np.arange(start, self.n))

    def delete(self, slot: int, last: int) -> None:
        """The Document in ``slot`` went and the one in ``last`` (the last slot) moved into it."""
        self._table[self._cell_of(slot)] = _GONE
        if slot != last:
            self._table[self._cell_of(last)] = slot
            self._hashes[slot] = self._hashes[last]
        self.n = last
        if self._used - self.n > max(self.n, 1024):  # more marks than slots: lookups walk past them
            self._rebuild()

    def _cell_of(self, slot: int) -> int:
        mask = len(self._table) - 1
        pos = int(self._hashes[slot]) & mask
        while self._table[pos] != slot:
            if self._table[pos] == _EMPTY:
                raise KeyError(slot)  # a bug: every slot below n has a cell
            pos = (pos + 1) & mask
        return pos

    def _rebuild(self) -> None:
        size = 16
        while size < 2 * self.n + 2:
            size *= 2
        self._table = np.full(size, _EMPTY, dtype=np.int32)
        self._used = 0
        self._place(np.arange(self.n))

    def _place(self, slots: np.ndarray) -> None:
        """Put the slots into empty cells, all at once: each round, every slot whose cell is empty
        writes itself there, one of those writing the same cell wins it, and the others move on."""
        self._used += len(slots)
        table, mask = self._table, len(self._table) - 1
        pos = self._hashes[slots].astype(np.int64) & mask
        while len(slots):
            free = np.flatnonzero(table[pos] == _EMPTY)
            table[pos[free]] = slots[free]
            lost = np.ones(len(slots), dtype=bool)
            lost[free] = table[pos[free]] != slots[free]
            slots, pos = slots[lost], (pos[lost] + 1) & mask

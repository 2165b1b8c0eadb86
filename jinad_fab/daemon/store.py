"""Bookkeeping of workspaces, Flows, Pods and Peas in SQLite (WAL).

Durability follows what a row describes. A workspace's row is committed with ``synchronous=FULL``
(fsynced: an accepted upload survives a power cut). A Flow's, Pod's or Pea's row is committed
with ``synchronous=NORMAL``: in WAL mode that is still atomic and consistent and survives the
daemon being killed, and it only lets an OS crash or power cut lose the last commits, which
describe processes that died with the machine anyway (recovery then marks them vanished). The
fsync each create and delete would otherwise wait for three and two times was a large part of
their latency. Deletes are NORMAL: a row that comes back is reconciled (a DELETING workspace is
deleted again at start-up).

One row per object; ``data`` (what the user asked for and what the runtime reported) and
``handle`` (how the runtime finds the object again after a restart) are JSON columns. Nothing
is pickled: a store opened by a newer daemon reads the same rows. ``Store(":memory:")`` keeps
everything in memory (tests, ``--ephemeral``); the unit contract test runs against both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    workspace_id TEXT,
    state        TEXT NOT NULL,
    runtime      TEXT NOT NULL,
    created      REAL NOT NULL,
    updated      REAL NOT NULL,
    error        TEXT,
    data         TEXT NOT NULL DEFAULT '{}',
    handle       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS objects_kind ON objects(kind, state);
CREATE INDEX IF NOT EXISTS objects_workspace ON objects(workspace_id);
"""

_COLUMNS = ("id", "kind", "workspace_id", "state", "runtime", "created", "updated", "error", "data", "handle")


@dataclasses.dataclass
class Record:
    id: str
    kind: str
    state: str
    runtime: str
    workspace_id: str | None = None
    created: float = dataclasses.field(default_factory=time.time)
    updated: float = dataclasses.field(default_factory=time.time)
    error: str | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    handle: dict[str, Any] = dataclasses.field(default_factory=dict)


class Store:
    """Thread-safe: the API's event loop and build worker threads share one connection under a lock."""

    def __init__(self, path: str | pathlib.Path):
        self.path = str(path)
        self._lock = threading.Lock()
        if self.path != ":memory:":  # it holds Pods' env values: owner-only (SQLite gives -wal/-shm the same mode)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(self.path + suffix, 0o600)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._sync = "FULL"
        self._db.executescript(_SCHEMA)

    def _durability(self, kind: str) -> None:
        """Set the next commit's fsync policy for a row of ``kind`` (caller holds the lock)."""
        wanted = "FULL" if kind in ("workspace", "deployment") else "NORMAL"
        if wanted != self._sync:
            self._db.execute(f"PRAGMA synchronous={wanted}")
            self._sync = wanted

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _row(row: tuple) -> Record:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["data"] = json.loads(values["data"])
        values["handle"] = json.loads(values["handle"])
        return Record(**values)

    def insert(self, rec: Record) -> Record:
        with self._lock:
            self._durability(rec.kind)
            self._db.execute(
                f"INSERT INTO objects ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                (rec.id, rec.kind, rec.workspace_id, rec.state, rec.runtime, rec.created, rec.updated,
                 rec.error, json.dumps(rec.data), json.dumps(rec.handle)),
            )
        return rec

    def get(self, object_id: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM objects WHERE id = ?", (object_id,)
            ).fetchone()
        return self._row(row) if row else None

    def list(self, kind: str | None = None, workspace_id: str | None = None,
             states: Iterable[str] | None = None) -> list[Record]:
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if workspace_id is not None:
            where.append("workspace_id = ?")
            args.append(workspace_id)
        if states is not None:
            states = list(states)
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM objects"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def update(self, object_id: str, *, state: str | None = None, error: str | None = ...,  # type: ignore[assignment]
               data: dict[str, Any] | None = None, handle: dict[str, Any] | None = None,
               expect_state: Iterable[str] | None = None) -> Record | None:
        """Change some fields; ``data`` is merged key by key. With ``expect_state`` the update only
        happens if the current state is one of those (a compare-and-set). Returns the new record,
        or None if the object is unknown or not in an expected state."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM objects WHERE id = ?", (object_id,)
            ).fetchone()
            if row is None:
                return None
            rec = self._row(row)
            if expect_state is not None and rec.state not in set(expect_state):
                return None
            if state is not None:
                rec.state = state
            if error is not ...:
                rec.error = error
            if data:
                rec.data.update(data)
            if handle is not None:
                rec.handle = handle
            rec.updated = time.time()
            self._durability(rec.kind)
            self._db.execute(
                "UPDATE objects SET state = ?, error = ?, data = ?, handle = ?, updated = ? WHERE id = ?",
                (rec.state, rec.error, json.dumps(rec.data), json.dumps(rec.handle), rec.updated, rec.id),
            )
            return rec

    def delete(self, object_id: str) -> bool:
        with self._lock:
            self._durability("")
            cur = self._db.execute("DELETE FROM objects WHERE id = ?", (object_id,))
        return cur.rowcount > 0

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            rows = self._db.execute("SELECT kind, state, COUNT(*) FROM objects GROUP BY kind, state").fetchall()
        out: dict[str, dict[str, int]] = {}
        for kind, state, n in rows:
            out.setdefault(kind, {})[state] = n
        return out

"""Where an ``_index`` shard keeps its files, and how its replicas, dumps and loads share them.

A shard's *home* is its Executor workspace (``<workspace>/<name>-shard<i>``). Every replica of the
shard opens the same home:

* ``index.lock``: a ``flock`` readers-writer lock. A request that writes holds it exclusively from
  before it reads the stored count until its vector rows are in place; a search holds it shared
  from the moment it looks for other replicas' writes until it has read its matches. So a search
  never sees a half-applied write, whichever replica ran it, and it sees every write that returned.
* ``CURRENT`` (optional): the name of the sub-directory that holds the store (``gen-<hex>``). Without
  it the store lies in the home itself. Loading a dump copies it into a fresh sub-directory and
  swaps ``CURRENT`` atomically; the replicas still running on the old store notice the new pointer
  at their next request and reopen. Names are never reused, so SQLite of an old, unlinked store
  cannot touch the new one.

A dump of a shard (``/dump``) is a directory ``<path>/<shard id>`` holding ``index.sqlite`` (an
SQLite backup, in rollback-journal mode: one self-contained file), ``vectors.f32`` and
``norms.f32`` (exactly ``count`` rows), the saved approximate index if there is one (``ann-*.faiss``,
so a store loaded from the dump does not train it again) and ``manifest.json`` (``id``,
``shard_id``, ``shards``, ``count``, ``dim``). It is written into a temporary sibling directory, fsynced, and renamed into
place, so a directory found under that name is always complete.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import BadConfig

__all__ = ["ShardLock", "store_dir", "switch_store", "write_dump", "read_manifest", "install_dump",
           "DUMP_FORMAT", "STORE_FILES"]

DUMP_FORMAT = 1
STORE_FILES = ("index.sqlite", "vectors.f32", "norms.f32")
_POINTER = "CURRENT"


class ShardLock:
    """A re-entrant readers-writer lock shared by every process that opens the same shard home."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._depth = 0
        self._mode = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    @contextmanager
    def shared(self) -> Iterator[bool]:
        """Yields True when this call took the lock (the outermost holder), False when nested."""
        with self._hold(fcntl.LOCK_SH) as outer:
            yield outer

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        with self._hold(fcntl.LOCK_EX) as outer:
            yield outer

    @contextmanager
    def _hold(self, mode: int) -> Iterator[bool]:
        if self._depth:
            if mode == fcntl.LOCK_EX and self._mode != fcntl.LOCK_EX:
                # upgrading in place would let another reader slip in between: a bug in the caller
                raise RuntimeError("_index: a write was started inside a read of the same shard")
            self._depth += 1
            try:
                yield False
            finally:
                self._depth -= 1
            return
        fcntl.flock(self._fd, mode)
        self._depth, self._mode = 1, mode
        try:
            yield True
        finally:
            self._depth, self._mode = 0, 0
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor also drops a lock still held
            self._fd = -1


# ---------------------------------------------------------------------- the store's directory
def _pointer_path(home: str) -> str:
    return os.path.join(home, _POINTER)


def pointer_stamp(home: str) -> tuple[int, int] | None:
    """Changes whenever ``CURRENT`` is replaced (a new inode each time): cheap to check per request."""
    try:
        st = os.stat(_pointer_path(home))
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def store_dir(home: str) -> str:
    """The directory holding the shard's store right now."""
    try:
        with open(_pointer_path(home), encoding="utf-8") as fh:
            name = fh.read().strip()
    except FileNotFoundError:
        return home
    if not name.startswith("gen-") or os.sep in name or (os.altsep and os.altsep in name):
        raise BadConfig(f"_index: {home}: {_POINTER} names {name!r}, not a store of this shard")
    return os.path.join(home, name)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch_store(home: str, new_dir: str) -> None:
    """Point the shard at ``new_dir`` (a ``gen-*`` directory in ``home``) and remove the old store.

    The caller holds the shard's lock exclusively. Replicas that still have the old files open keep
    valid descriptors on unlinked files until they see the new pointer and reopen."""
    old = store_dir(home)
    tmp = _pointer_path(home) + f".{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(os.path.basename(new_dir) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, _pointer_path(home))
    _fsync_dir(home)
    if old == home:
        for name in STORE_FILES:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(os.path.join(home, name + suffix))
                except FileNotFoundError:
                    pass
    elif old != new_dir:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- dumps
def _copy_rows(rows: np.ndarray, path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(memoryview(np.ascontiguousarray(rows, dtype=np.float32)).cast("B"))
        fh.flush()
        os.fsync(fh.fileno())


def write_dump(db: sqlite3.Connection, vectors: np.ndarray, norms: np.ndarray, dest: str,
               manifest: dict[str, Any], extra: list[str] = ()) -> None:
    """Write one shard's dump to ``dest`` (replaced whole if it exists), with copies of the ``extra``
    files (a saved approximate index). The caller holds the shard's lock (shared is enough: it keeps
    writers out), so the SQLite backup, the vector rows and the extra files agree."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".partial", dir=parent)
    try:
        out = sqlite3.connect(os.path.join(tmp, "index.sqlite"), isolation_level=None)
        try:
            db.backup(out)
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            out.execute("BEGIN")
            out.execute("DELETE FROM moves")  # already applied to the rows copied below
            out.execute("INSERT OR REPLACE INTO meta VALUES ('dump_id', ?)", (manifest["id"],))
            out.execute("COMMIT")
        finally:
            out.close()
        _fsync_file(os.path.join(tmp, "index.sqlite"))
        _copy_rows(vectors, os.path.join(tmp, "vectors.f32"))
        _copy_rows(norms, os.path.join(tmp, "norms.f32"))
        for path in extra:
            shutil.copyfile(path, os.path.join(tmp, os.path.basename(path)))
            _fsync_file(os.path.join(tmp, os.path.basename(path)))
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o700)
        _fsync_dir(tmp)
        old = None
        if os.path.lexists(dest):  # a directory cannot be renamed over a full one: move it aside first
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".old", dir=parent)
            os.rename(dest, os.path.join(old, "dump"))
        os.rename(tmp, dest)
        tmp = None
        _fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def new_manifest(shard_id: int, shards: int, count: int, dim: int | None) -> dict[str, Any]:
    return {"format": DUMP_FORMAT, "id": uuid.uuid4().hex, "shard_id": shard_id, "shards": shards,
            "count": count, "dim": dim, "created": time.time()}


def read_manifest(dump: str, shard_id: int, shards: int) -> tuple[str, dict[str, Any]]:
    """The directory of this shard's part of a dump and its manifest; BadConfig saying what is wrong."""
    src = os.path.join(dump, str(shard_id))
    if not os.path.isdir(dump):
        raise BadConfig(f"_index: dump_path {dump!r} does not exist (write one with the /dump endpoint)")
    try:
        with open(os.path.join(src, "manifest.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        found = sorted(n for n in os.listdir(dump) if n.isdigit())
        raise BadConfig(f"_index: dump_path {dump!r} holds no dump of shard {shard_id} "
                        f"(it holds shards {found or 'none'}; this Pod has {shards} shard(s))") from None
    except (OSError, ValueError) as exc:
        raise BadConfig(f"_index: the dump of shard {shard_id} in {dump!r} is unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != DUMP_FORMAT:
        raise BadConfig(f"_index: {src!r} is not an _index dump of format {DUMP_FORMAT}")
    if manifest.get("shards") != shards or manifest.get("shard_id") != shard_id:
        raise BadConfig(f"_index: dump_path {dump!r} was dumped from {manifest.get('shards')} shard(s); this Pod "
                        f"has {shards}, and Documents are spread over shards by id, so it cannot load it")
    for name in STORE_FILES:
        if not os.path.isfile(os.path.join(src, name)):
            raise BadConfig(f"_index: the dump of shard {shard_id} in {dump!r} lacks {name}")
    return src, manifest


def store_dump_id(path: str) -> str | None:
    """The dump a store was loaded from (None: not from a dump, or no store yet)."""
    if not os.path.isfile(path):
        return None
    db = sqlite3.connect(path)  # read-write: a read-only connection may fail on a store in WAL mode
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'dump_id'").fetchone()
    except sqlite3.OperationalError:  # no meta table: not a store of this version
        return None
    finally:
        db.close()
    return row[0] if row else None


def copy_dump(home: str, src: str, manifest: dict[str, Any]) -> str | None:
    """Copy the dump in ``src`` into a new store directory of ``home`` (no lock needed: nothing points
    at it yet), unless the shard's store already is that dump (perhaps with writes since: a replica
    restarted with the same ``dump_path`` keeps them). Returns the directory, or None."""
    if store_dump_id(os.path.join(store_dir(home), "index.sqlite")) == manifest["id"]:
        return None
    new = tempfile.mkdtemp(prefix="gen-", dir=home)
    try:
        saved_ann = [n for n in os.listdir(src) if n.startswith("ann-") and n.endswith(".faiss")]
        for name in (*STORE_FILES, *saved_ann):
            shutil.copyfile(os.path.join(src, name), os.path.join(new, name))
            os.chmod(os.path.join(new, name), 0o600)
            _fsync_file(os.path.join(new, name))
        if store_dump_id(os.path.join(new, "index.sqlite")) != manifest["id"]:
            raise BadConfig(f"_index: {src!r}: its index.sqlite does not belong to its manifest.json")
        _fsync_dir(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return new


def install_dump(home: str, new: str, manifest: dict[str, Any]) -> bool:
    """Point the shard at a copy made by :func:`copy_dump`, unless another replica installed the same
    dump meanwhile. The caller holds the shard's lock exclusively (only for this short step, so
    searches on the replicas still running wait for a rename, not for a copy). True when switched."""
    if store_dump_id(os.path.join(store_dir(home), "index.sqlite")) == manifest["id"]:
        shutil.rmtree(new, ignore_errors=True)
        return False
    try:
        switch_store(home, new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return True

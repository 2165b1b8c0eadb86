"""Per-object log files as JSON lines, and reading them back as NDJSON.

Every Flow/Pod/Pea (and every workspace build) has one append-only file ``<home>/logs/<id>.log``.
The daemon writes its own events there with :func:`event`, one ``os.write`` per line on an
``O_APPEND`` descriptor (so lines from the daemon and from the child never interleave mid-line);
the child's stdout/stderr are appended to the same file. Lines that are not JSON objects (a stray
``print``) are wrapped into ``{"source": "output", "msg": ...}`` when read, so a reader always gets
NDJSON whatever logger configuration the user's code has.

Positions are *line numbers*: ``offset=K`` skips the first K complete lines, so a client that has
received K lines reconnects with ``offset=K`` and misses nothing. A trailing partial line is never
served until its newline is written.

Rotation (:func:`rotate`, run by the daemon's housekeeping): past ``max_bytes`` of live lines, the
complete lines are copied to ``<id>.log.1`` (older copies move to ``.2``... up to ``backups``) and
their space in ``<id>.log`` is given back to the file system by punching a hole over them
(``fallocate(FALLOC_FL_PUNCH_HOLE)``). The file is never renamed or truncated: a child process, a
forked object or a container appending to it through its own descriptor or bind mount loses
nothing and needs no signal. Byte positions and line numbers therefore stay absolute for the life
of the log; ``<id>.log.rot`` (JSON, replaced atomically) says where the live part starts and which
range each copy holds, so readers and followers continue across a rotation with no line lost or
repeated. A file system without hole punching keeps the log whole (and says so in the daemon log).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import json
import logging
import os
import pathlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, Any


def event(path: pathlib.Path, msg: str, *, level: str = "INFO", source: str = "jinad", **fields: Any) -> None:
    line = {"ts": round(time.time(), 6), "level": level, "source": source, "msg": msg, **fields}
    data = (json.dumps(line, default=str) + "\n").encode()
    with _lock(path):  # never in the middle of a rotation of this file
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


# ---- rotation ------------------------------------------------------------------------------------

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_FALLOC_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (linux/falloc.h)
_no_punch_warned: set[str] = set()


def _lock(path: pathlib.Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path), threading.Lock())


def backup_path(path: pathlib.Path, i: int) -> pathlib.Path:
    return path.with_name(f"{path.name}.{i}")


def _meta_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f"{path.name}.rot")


def read_meta(path: pathlib.Path) -> dict[str, Any]:
    """Where the live part of ``path`` starts (``start``: byte position, ``lines``: lines before it)
    and what each copy holds (``backups``: newest first, ``{"start", "end", "lines_start", "lines"}``)."""
    try:
        meta = json.loads(_meta_path(path).read_bytes())
    except (FileNotFoundError, ValueError):
        meta = {}
    return {"start": int(meta.get("start", 0)), "lines": int(meta.get("lines", 0)),
            "backups": list(meta.get("backups", []))}


def _write_meta(path: pathlib.Path, meta: dict[str, Any]) -> None:
    target = _meta_path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, target)


def _punch(fd: int, length: int) -> bool:
    libc_name = ctypes.util.find_library("c")
    if not libc_name or length <= 0:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fallocate = getattr(libc, "fallocate", None)
    if fallocate is None:
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return fallocate(fd, _FALLOC_PUNCH_HOLE, 0, length) == 0


def rotate(path: pathlib.Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` if its live part is over ``max_bytes`` (see the module docstring). Returns
    whether it did. Safe against concurrent appends from any process."""
    with _lock(path):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            meta = read_meta(path)
            size = os.fstat(fd).st_size
            if size - meta["start"] <= max_bytes:
                return False
            with os.fdopen(os.dup(fd), "rb") as fh:
                end = _complete_end(fh, size)
                if end <= meta["start"]:
                    return False  # one line longer than the limit, still being written
                backup_path(path, backups).unlink(missing_ok=True)
                for i in range(backups - 1, 0, -1):
                    if backup_path(path, i).exists():
                        os.replace(backup_path(path, i), backup_path(path, i + 1))
                lines = 0
                out_fd = os.open(backup_path(path, 1), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(out_fd, "wb") as out:
                    fh.seek(meta["start"])
                    left = end - meta["start"]
                    while left > 0:
                        chunk = fh.read(min(_BLOCK, left))
                        if not chunk:
                            break
                        out.write(chunk)
                        lines += chunk.count(b"\n")
                        left -= len(chunk)
            kept = [b for b in meta["backups"] if b.get("end", 0) > 0][: backups - 1]
            new = {"start": end, "lines": meta["lines"] + lines,
                   "backups": [{"start": meta["start"], "end": end, "lines_start": meta["lines"], "lines": lines},
                               *kept]}
            _write_meta(path, new)  # before the hole: a reader that finds zeros reads this again
            if not _punch(fd, end):
                if str(path.parent) not in _no_punch_warned:
                    _no_punch_warned.add(str(path.parent))
                    logging.getLogger("jinad").warning(
                        "the file system of %s cannot punch holes: logs there are copied but not shrunk",
                        path.parent)
            return True
        finally:
            os.close(fd)


def remove(path: pathlib.Path) -> None:
    """Delete a log with its copies and its rotation record."""
    with _lock(path):
        for p in (path, *path.parent.glob(f"{path.name}.*")):
            p.unlink(missing_ok=True)


def normalize(raw: bytes) -> bytes:
    """One stored line (without its newline) -> one NDJSON line (with its newline)."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        return text.encode() + b"\n"
    return json.dumps({"source": "output", "msg": text}).encode() + b"\n"


_BLOCK = 256 * 1024


def _complete_end(fh: IO[bytes], size: int) -> int:
    """The byte position just after the last newline of the first ``size`` bytes (0 if none)."""
    pos = size
    while pos > 0:
        step = min(_BLOCK, pos)
        fh.seek(pos - step)
        chunk = fh.read(step)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


def _tail(fh: IO[bytes], lo: int, hi: int, n: int) -> list[bytes]:
    """The last ``n`` complete lines between byte positions ``lo`` and ``hi`` (``hi`` just after a
    newline), read backwards in blocks: memory and time in proportion to ``n``, not to the file."""
    pos, buf = hi, b""
    while pos > lo and buf.count(b"\n") <= n:
        step = min(_BLOCK, pos - lo)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
    lines = buf.split(b"\n")[:-1]  # buf ends at a newline
    if pos > lo:
        lines = lines[1:]  # the first may be a fragment of a longer line
    return [x for x in lines if not x.startswith(b"\0")][-n:] if n > 0 else []


def last_lines(path: pathlib.Path, n: int) -> tuple[list[bytes], int]:
    """The last ``n`` complete lines (from the copies too, if the live part has fewer). Returns
    ``(ndjson_lines, byte_position_after_them)``."""
    if not path.exists():
        return [], 0
    meta = read_meta(path)
    with open(path, "rb") as fh:
        end = _complete_end(fh, fh.seek(0, os.SEEK_END))
        raw = _tail(fh, min(meta["start"], end), end, n)
    for i in range(1, len(meta["backups"]) + 1):
        if len(raw) >= n:
            break
        try:
            with open(backup_path(path, i), "rb") as fh:
                raw = _tail(fh, 0, _complete_end(fh, fh.seek(0, os.SEEK_END)), n - len(raw)) + raw
        except FileNotFoundError:
            break
    return [normalize(x) for x in raw], end


def _read_file(path: pathlib.Path, pos: int, limit: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(pos)
            return fh.read(limit)
    except FileNotFoundError:
        return b""


def _chunk(path: pathlib.Path, pos: int, limit: int = 4 * 1024 * 1024) -> tuple[bytes, int]:
    """Bytes of the log from byte position ``pos`` on (from a copy if they were rotated out of the
    file), and the position after them. Lines rotated away past the copies kept are skipped."""
    for _ in range(5):
        meta = read_meta(path)
        if pos < meta["start"]:
            copies = meta["backups"]
            for i, b in enumerate(copies, 1):
                if b["start"] <= pos < b["end"]:
                    data = _read_file(backup_path(path, i), pos - b["start"], min(limit, b["end"] - pos))
                    if data:
                        return data, pos + len(data)
                    break  # rotated again meanwhile: look again
            else:
                pos = max(pos, min([b["start"] for b in copies] + [meta["start"]]))
            continue
        data = _read_file(path, pos, limit)
        if b"\0" in data and read_meta(path)["start"] != meta["start"]:
            data = data[:data.index(b"\0")]  # a rotation punched the rest meanwhile: it is in a copy
            if not data:
                continue
        return data, pos + len(data)
    return b"", pos


def _lines(path: pathlib.Path, offset: int) -> Iterator[tuple[bytes | None, int]]:
    """``(raw_line, byte_position_after_it)`` for every complete line, ``None`` for those before
    line ``offset``, up to what the file held when called."""
    meta = read_meta(path)
    if offset >= meta["lines"]:
        pos, skip = meta["start"], offset - meta["lines"]
    else:
        pos, skip = meta["start"], 0
        for b in meta["backups"]:
            if b["lines_start"] <= offset < b["lines_start"] + b["lines"]:
                pos, skip = b["start"], offset - b["lines_start"]
        if skip == 0 and meta["backups"] and offset < meta["backups"][-1]["lines_start"]:
            pos = meta["backups"][-1]["start"]  # rotated away: from the oldest copy kept
    try:
        stop = path.stat().st_size
    except FileNotFoundError:
        return
    pending, line_start = b"", pos
    while pos < stop:
        chunk, pos = _chunk(path, pos, min(_BLOCK, stop - pos))
        if not chunk:
            return
        if pos - len(chunk) != line_start + len(pending):  # skipped what was rotated away
            pending, line_start = b"", pos - len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line_start += len(raw) + 1
            if skip:
                skip -= 1
                yield None, line_start
            else:
                yield raw, line_start


def lines_from(path: pathlib.Path, offset: int = 0) -> Iterator[bytes]:
    """Complete lines from line ``offset`` on, streamed in blocks of whole lines (a sync generator:
    Starlette runs each step in a worker thread, off the event loop; a step per line cost a thread
    hop per line, ~70 s for an 80 MB log, where a step per block of lines costs well under one)."""
    batch: list[bytes] = []
    size = 0
    for raw, _ in _lines(path, offset):
        if raw is not None:
            line = normalize(raw)
            batch.append(line)
            size += len(line)
            if size >= _BLOCK:
                yield b"".join(batch)
                batch, size = [], 0
    if batch:
        yield b"".join(batch)


def read(path: pathlib.Path, *, offset: int = 0, tail: int | None = None) -> tuple[list[bytes], int]:
    """Complete lines from line ``offset`` (or only the last ``tail``): ``(ndjson_lines, byte_end)``.
    With ``tail`` it reads backwards; without, it streams forward (both bounded in memory by what
    they return)."""
    if tail is not None and offset == 0:
        return last_lines(path, tail)
    lines: collections.deque[bytes] | list[bytes] = collections.deque(maxlen=tail) if tail is not None else []
    end = read_meta(path)["start"] if path.exists() else 0
    for raw, after in _lines(path, offset):
        if raw is not None:
            lines.append(normalize(raw))
        end = after
    return list(lines), end


def tail_messages(path: pathlib.Path, n: int = 20) -> list[str]:
    """The last ``n`` messages as plain text (for error reports such as a failed build)."""
    lines, _ = last_lines(path, n)
    out = []
    for line in lines:
        obj = json.loads(line)
        out.append(str(obj.get("msg", obj.get("message", obj))))
    return out


async def follow(path: pathlib.Path, *, offset: int = 0, tail: int | None = None,
                 finished: Callable[[], bool], poll: float = 0.1) -> AsyncIterator[bytes]:
    """Yield NDJSON lines, then new ones as they are written, until ``finished()`` and drained."""
    lines, pos = await asyncio.to_thread(read, path, offset=offset, tail=tail)
    for line in lines:
        yield line
    pending = b""
    while True:
        done = finished()  # checked before reading so the last lines are never lost
        chunk, pos = await asyncio.to_thread(_chunk, path, pos)  # across rotations, from the copies
        if chunk:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield normalize(raw)
        elif done:
            return
        else:
            await asyncio.sleep(poll)

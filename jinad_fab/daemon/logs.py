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
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import pathlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, Any


def event(path: pathlib.Path, msg: str, *, level: str = "INFO", source: str = "jinad", **fields: Any) -> None:
    line = {"ts": round(time.time(), 6), "level": level, "source": source, "msg": msg, **fields}
    data = (json.dumps(line, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


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


def last_lines(path: pathlib.Path, n: int) -> tuple[list[bytes], int]:
    """The last ``n`` complete lines, read backwards from the end in blocks (memory and time in
    proportion to ``n``, not to the file). Returns ``(ndjson_lines, byte_position_after_them)``."""
    if not path.exists():
        return [], 0
    with open(path, "rb") as fh:
        end = _complete_end(fh, fh.seek(0, os.SEEK_END))
        pos, buf = end, b""
        while pos > 0 and buf.count(b"\n") <= n:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
    lines = buf.split(b"\n")[:-1]  # buf ends at a newline
    if pos > 0:
        lines = lines[1:]  # the first may be a fragment of a longer line
    return [normalize(x) for x in lines[-n:]] if n > 0 else [], end


def lines_from(path: pathlib.Path, offset: int = 0) -> Iterator[bytes]:
    """Complete lines from line ``offset`` on, streamed in blocks (a sync generator: Starlette runs
    it in a worker thread, off the event loop)."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        end = _complete_end(fh, fh.seek(0, os.SEEK_END))
        fh.seek(0)
        pos, seen, pending = 0, 0, b""
        while pos < end:
            chunk = fh.read(min(_BLOCK, end - pos))
            if not chunk:
                break
            pos += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                if seen >= offset:
                    yield normalize(raw)
                seen += 1


def read(path: pathlib.Path, *, offset: int = 0, tail: int | None = None) -> tuple[list[bytes], int]:
    """Complete lines from line ``offset`` (or only the last ``tail``): ``(ndjson_lines, byte_end)``.
    With ``tail`` it reads backwards; without, it streams forward (both bounded in memory by what
    they return)."""
    if tail is not None and offset == 0:
        return last_lines(path, tail)
    lines = list(lines_from(path, offset))
    if tail is not None:
        lines = lines[-tail:] if tail else []
    end = 0
    if path.exists():
        with open(path, "rb") as fh:
            end = _complete_end(fh, fh.seek(0, os.SEEK_END))
    return lines, end


def tail_messages(path: pathlib.Path, n: int = 20) -> list[str]:
    """The last ``n`` messages as plain text (for error reports such as a failed build)."""
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        chunk = fh.read()
    out: collections.deque[str] = collections.deque(maxlen=n)
    for raw in chunk.splitlines():
        obj = json.loads(normalize(raw))
        out.append(str(obj.get("msg", obj.get("message", obj))))
    return list(out)


def _read_at(path: pathlib.Path, pos: int, limit: int = 4 * 1024 * 1024) -> bytes:
    if not path.exists():
        return b""
    with open(path, "rb") as fh:
        fh.seek(pos)
        return fh.read(limit)


async def follow(path: pathlib.Path, *, offset: int = 0, tail: int | None = None,
                 finished: Callable[[], bool], poll: float = 0.1) -> AsyncIterator[bytes]:
    """Yield NDJSON lines, then new ones as they are written, until ``finished()`` and drained."""
    lines, pos = await asyncio.to_thread(read, path, offset=offset, tail=tail)
    for line in lines:
        yield line
    pending = b""
    while True:
        done = finished()  # checked before reading so the last lines are never lost
        chunk = await asyncio.to_thread(_read_at, path, pos)
        if chunk:
            pos += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield normalize(raw)
        elif done:
            return
        else:
            await asyncio.sleep(poll)

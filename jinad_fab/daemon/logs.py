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
from collections.abc import AsyncIterator, Callable
from typing import Any


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


def read(path: pathlib.Path, *, offset: int = 0, tail: int | None = None) -> tuple[list[bytes], int, int]:
    """Complete lines of ``path`` from line ``offset`` (or only the last ``tail`` of them).

    Returns ``(ndjson_lines, next_line_number, byte_position_after_them)``.
    """
    if not path.exists():
        return [], offset, 0
    with open(path, "rb") as fh:
        data = fh.read()
    end = data.rfind(b"\n") + 1  # only complete lines
    lines = data[:end].split(b"\n")[:-1] if end else []
    total = len(lines)
    start = min(offset, total)
    if tail is not None:
        start = max(start, total - tail)
    return [normalize(x) for x in lines[start:]], total, end


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


async def follow(path: pathlib.Path, *, offset: int = 0, tail: int | None = None,
                 finished: Callable[[], bool], poll: float = 0.1) -> AsyncIterator[bytes]:
    """Yield NDJSON lines, then new ones as they are written, until ``finished()`` and drained."""
    lines, _, pos = await asyncio.to_thread(read, path, offset=offset, tail=tail)
    for line in lines:
        yield line
    pending = b""
    while True:
        done = finished()  # checked before reading so the last lines are never lost
        chunk = b""
        if path.exists():
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
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

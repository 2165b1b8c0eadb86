"""A workspace build's commands (``python -m venv``, ``pip``) as processes the daemon can find and
kill again, even after it was SIGKILLed and restarted.

Each command runs as the leader of a new session and process group, with a random marker in its
environment (inherited by pip's own helpers, such as a PEP 517 build backend). Its handle,
``{"pid", "pgid", "start_time", "marker"}``, is recorded before the command can do anything that
matters. :func:`kill` signals the leader only if pid *and* start time still match (a pid the
kernel gave to another process since is left alone) and any other process only if it carries the
marker: a recycled pid or process group id is never signalled.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import psutil

MARKER_ENV = "JINAD_FAB_BUILD"
_START_TIME_TOLERANCE = 0.5  # seconds; psutil derives start times from clock ticks

Record = Callable[[dict[str, Any] | None], None]
"""Called with a started command's handle, and with ``None`` once it has exited."""


def popen(cmd: list[str], *, cwd: os.PathLike | str, env: Mapping[str, str],
          record: Record | None = None) -> subprocess.Popen:
    """Start ``cmd`` (stdout and stderr on one text pipe) in its own session, and ``record`` it."""
    marker = secrets.token_hex(12)
    proc = subprocess.Popen(cmd, cwd=cwd, env={**env, MARKER_ENV: marker}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True, close_fds=True)
    if record is not None:
        try:
            start_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            start_time = 0.0  # already gone: nothing to kill later
        try:
            record({"pid": proc.pid, "pgid": proc.pid, "start_time": start_time, "marker": marker})
        except BaseException:
            _kill_now(proc)
            raise
    return proc


def _kill_now(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def members(handle: dict[str, Any]) -> list[psutil.Process]:
    """The live processes of the build behind ``handle``: its leader if pid and start time match,
    and every process whose environment carries its marker."""
    found: dict[int, psutil.Process] = {}
    pid = int(handle.get("pid") or 0)
    marker = str(handle.get("marker") or "")
    if pid > 0:
        try:
            leader = psutil.Process(pid)
            if abs(leader.create_time() - float(handle.get("start_time") or 0)) < _START_TIME_TOLERANCE:
                found[pid] = leader
        except psutil.Error:
            pass
    if marker:
        for p in psutil.process_iter():
            if p.pid in found or p.pid == os.getpid():
                continue
            try:
                if p.environ().get(MARKER_ENV) == marker:
                    found[p.pid] = p
            except psutil.Error:  # gone, a zombie, or another user's: not ours either way
                continue
    return [p for p in found.values() if _running(p)]


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill(handle: dict[str, Any] | None, timeout: float = 5.0) -> list[int]:
    """SIGKILL whatever still runs of the build behind ``handle``; wait for it; return the pids."""
    if not handle:
        return []
    procs = members(handle)
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in procs]

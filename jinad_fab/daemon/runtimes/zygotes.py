"""The daemon's side of a workspace zygote (see :mod:`jinad_fab.launch.zygote`).

:class:`Zygote` launches ``python -m jinad_fab.launch zygote --socket PATH`` with a workspace's
interpreter and talks to it: ``spawn`` forks a runtime process from it in a few milliseconds
instead of a new interpreter's start-up and imports. Anything that goes wrong (it does not come
up, it died, it answered nonsense) is a :class:`ZygoteError`, and the process runtime falls back
to starting a new interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from ...errors import JinadFabError
from ...launch.command import MODULE as LAUNCH_MODULE

MAX_SOCKET_PATH = 96  # sun_path is 108 bytes on Linux, 104 on macOS; the zygote binds PATH.<pid> first


class ZygoteError(JinadFabError):
    """The zygote is unusable; ``reason`` says why (it goes to the object's log)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class ZygoteUnsure(ZygoteError):
    """A request was sent but no answer came: the zygote may or may not have forked the object."""


class Zygote:
    """One running zygote process and its socket."""

    def __init__(self, proc: subprocess.Popen, socket_path: pathlib.Path, log_path: pathlib.Path):
        self.proc = proc
        self.socket_path = socket_path
        self.log_path = log_path
        self.env: dict[str, str] = {}

    @classmethod
    def launch(cls, python: str, socket_path: pathlib.Path, log_path: pathlib.Path, *, cwd: pathlib.Path,
               env: Mapping[str, str], timeout: float) -> Zygote:
        """Start a zygote and wait until it answers (its imports take about an interpreter's start-up)."""
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
            raise ZygoteError(f"socket path {socket_path} is too long for a unix socket")
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            proc = subprocess.Popen([python, "-m", LAUNCH_MODULE, "zygote", "--socket", str(socket_path)],
                                    cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ZygoteError(f"cannot run {python}: {exc}") from exc
        finally:
            os.close(fd)
        z = cls(proc, socket_path, log_path)
        z.env = dict(env)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            rc = proc.poll()
            if rc is not None:
                raise ZygoteError(f"the zygote exited with code {rc} while starting: {z.log_tail()}")
            if socket_path.exists():
                try:
                    if z.request({"op": "ping"}, timeout=5).get("pid") == proc.pid:
                        return z
                except ZygoteError:
                    pass
            if time.monotonic() > deadline:
                z.close(timeout=1)
                raise ZygoteError(f"the zygote did not answer within {timeout:g}s: {z.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """One request, one answer; ``{"error": ...}`` answers and every failure raise ZygoteError."""
        sent = False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(self.socket_path))
                s.sendall((json.dumps(req) + "\n").encode())
                sent = True
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            error = ZygoteUnsure if sent else ZygoteError
            raise error(f"the zygote did not answer: {type(exc).__name__}: {exc}") from exc
        if sent and not buf:
            raise ZygoteUnsure("the zygote closed the connection without an answer")
        try:
            answer = json.loads(buf)
        except ValueError as exc:
            raise ZygoteError(f"the zygote answered {buf[:200]!r}") from exc
        if not isinstance(answer, dict):
            raise ZygoteError(f"the zygote answered {answer!r}")
        if "error" in answer:
            raise ZygoteError(f"the zygote refused: {answer['error']}")
        return answer

    def spawn(self, argv: list[str], *, cwd: pathlib.Path, env: Mapping[str, str],
              log_path: pathlib.Path) -> tuple[int, float | None]:
        """Fork ``python -m jinad_fab.launch <argv>`` from the zygote; returns (pid, start time)."""
        answer = self.request({"argv": list(argv), "cwd": str(cwd), "env": dict(env), "log_path": str(log_path)})
        pid = answer.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise ZygoteError(f"the zygote answered {answer!r}")
        start = answer.get("start_time")
        return pid, float(start) if isinstance(start, (int, float)) else None

    def exit_code(self, pid: int) -> int | None:
        """The exit code of a child it forked and reaped, when it still remembers; never raises."""
        if not self.alive():
            return None
        try:
            code = self.request({"op": "exit_code", "pid": pid}, timeout=2).get("exit_code")
        except ZygoteError:
            return None
        return code if isinstance(code, int) else None

    def close(self, timeout: float = 5.0) -> None:
        """Ask it to exit (SIGTERM, then SIGKILL if it does not); its children keep running."""
        if self.alive():
            with contextlib.suppress(ZygoteError):
                self.request({"op": "exit"}, timeout=min(timeout, 2))
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(2)
        else:
            self.proc.poll()
        # a zygote removes its own socket when it exits; one that was killed leaves it to the next

    def log_tail(self, n: int = 5) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-n:]) or "(no output)"

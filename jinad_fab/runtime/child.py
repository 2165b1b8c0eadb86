"""Starting the runtime's child processes (a Pod's Peas, a Flow's Gateway) and learning when they are ready.

Each child is ``python -m jinad_fab.runtime <kind> --args-json ... --status-fd N`` (see
:mod:`jinad_fab.runtime.entry`): it reports
one JSON line on a pipe when it is ready (with its ports) or failed (with the reason). Stderr is
kept in a bounded ring so a failure can show the process's last log lines.

``fork=True`` starts the same entry point in a forked child instead of a new interpreter: a few
milliseconds instead of a Python start-up and imports. Only processes that own their whole
life use it (a Pod host, a Flow run by the daemon): they fork before starting any thread or
ZeroMQ context, and their children log straight to the inherited stderr.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import PeaStartError


class _Forked:
    """The part of subprocess.Popen's interface ChildProcess uses, for a forked child."""

    stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run_forked(main: Callable[[list[str]], int], argv: list[str]) -> NoReturn:
    """Child side of a fork: run ``main(argv)`` (an entry point), never return into the parent's code."""
    code = 1
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            os._exit(code or 0)


class ChildProcess:
    """A child process running one Pea, Gateway or Pod host."""

    def __init__(self, kind: str, args: dict, *, label: str, env: dict | None = None,
                 cwd: str | None = None, die_with_parent: bool = True, log_json: bool = False,
                 fork: bool = False):
        self.kind = kind
        self.args = args
        self.label = label
        self.env = env
        self.cwd = cwd
        self.die_with_parent = die_with_parent
        self.log_json = log_json
        self.fork = fork
        self.proc: subprocess.Popen | _Forked | None = None
        self.info: dict[str, Any] = {}
        self._status_r: int | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._tail_thread: threading.Thread | None = None

    def start(self) -> None:
        from .entry import secrets_pipe, split_secrets

        public, secrets = split_secrets(self.args)
        r, w = os.pipe()
        argv = [self.kind, "--args-json", json.dumps(public), "--status-fd", str(w)]
        keep = [w]
        if secrets:  # never in the command line, which every user of the machine can read
            keep.append(secrets_pipe(secrets))
            argv += ["--secrets-fd", str(keep[-1])]
        if self.die_with_parent:
            argv += ["--die-with-parent", "--parent-pid", str(os.getpid())]
        if self.log_json:
            argv.append("--log-json")
        if self.fork:
            self._start_forked(argv, r, keep)
            return
        cmd = [sys.executable, "-m", "jinad_fab.runtime", *argv]
        env = dict(os.environ)
        if self.env:
            env.update({k: str(v) for k, v in self.env.items()})
        try:
            # a session of its own: a terminal's Ctrl-C reaches the program that owns the Flow, which
            # stops its Peas in order, instead of interrupting Peas that may still be importing
            self.proc = subprocess.Popen(cmd, pass_fds=tuple(keep), stdin=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, env=env, cwd=self.cwd, close_fds=True,
                                         start_new_session=True)
        finally:
            for fd in keep:
                os.close(fd)
        self._status_r = r
        self._tail_thread = threading.Thread(target=self._pump_stderr, name=f"log-{self.label}", daemon=True)
        self._tail_thread.start()

    def _start_forked(self, argv: list[str], r: int, child_fds: list[int]) -> None:
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            if self.cwd:
                os.chdir(self.cwd)
            if self.env:
                os.environ.update({k: str(v) for k, v in self.env.items()})
            from . import entry

            level = logging.getLevelName(logging.getLogger().level)  # what this process's entry point set
            run_forked(lambda a: entry.main(a, default_log_level=level), argv)
        for fd in child_fds:
            os.close(fd)
        self._status_r = r
        self.proc = _Forked(pid)

    def _pump_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        out = sys.stderr
        with self.proc.stderr:  # closed at EOF here, not by the garbage collector (a ResourceWarning)
            for raw in iter(self.proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._tail.append(line)
                try:
                    out.write(line + "\n")
                    out.flush()
                except (ValueError, OSError):
                    pass

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(list(self._tail)[-n:])

    def wait_ready(self, deadline: float) -> dict:
        """Block until the process reports; raise PeaStartError naming it on failure or timeout."""
        assert self._status_r is not None
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeaStartError(self.label, "not ready in time (raise timeout_ready?)", self.log_tail())
            ready, _, _ = select.select([self._status_r], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._status_r, 65536)
                if not chunk:
                    break
                buf += chunk
        os.close(self._status_r)
        self._status_r = None
        if b"\n" not in buf:
            code = self.proc.wait(timeout=5) if self.proc else None
            time.sleep(0.05)
            raise PeaStartError(self.label, f"the process exited with code {code} before it was ready",
                                self.log_tail())
        event = json.loads(buf.split(b"\n", 1)[0])
        if event.get("state") != "ready":
            self.wait(timeout=5)
            raise PeaStartError(self.label, event.get("error") or "failed", self.log_tail())
        self.info = event
        return event

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)
        finally:
            if self._status_r is not None:
                os.close(self._status_r)
                self._status_r = None

    def join_logs(self, timeout: float = 2.0) -> None:
        if self._tail_thread is not None:
            self._tail_thread.join(timeout)


def stop_all(procs: list[ChildProcess], timeout: float = 10.0) -> None:
    """SIGTERM everything at once, then reap (SIGKILL what does not stop in time)."""
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.wait(timeout=max(0.1, deadline - time.monotonic()))
    for p in procs:
        p.join_logs(0.5)

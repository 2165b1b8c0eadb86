"""Run a command with its stderr on a pseudo-terminal, as an operator at a terminal sees it
(rich draws live progress only there), and hand back what the terminal showed."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_with_terminal_stderr(argv: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str] | None = None,
                             timeout: float = 300, columns: int = 120) -> tuple[int, str, str]:
    """(exit code, stdout, the terminal's text with escape sequences removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, cwd=cwd,
                            env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)})
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    data = b""
                if not data and proc.poll() is not None:
                    break
                shown += data
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
        out = proc.stdout.read().decode()
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        os.close(master)
    return code, out, _ESCAPES.sub("", shown.decode(errors="replace")).replace("\r", "\n")

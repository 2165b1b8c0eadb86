"""The one free-port helper of the test suite."""

from __future__ import annotations

import random
import socket

_rng = random.SystemRandom()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for `bind(port 0)`."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, on loopback, taken below the kernel's range for
    port 0. A test picks a port, then starts a process that binds it a moment (or seconds) later;
    every Pea and Gateway binds port 0 meanwhile, and from the kernel's range one of them could be
    handed that very port (a daemon's wait for ``/alive`` was once answered by a Flow's Gateway)."""
    low = _ephemeral_low()
    if low > 11000:
        for _ in range(100):
            port = _rng.randrange(10000, low)
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]

"""Handing secrets (other daemons' tokens) from ``jinad`` to a Flow process it starts.

A daemon-run Flow whose Pods live on other hosts needs those hosts' tokens. They must never sit
in clear in argv (``ps``), in the daemon's database, in a log, or in a container's stored
configuration. So the daemon splits them in two halves that are useless alone:

* a random one-time pad as long as the secrets, passed in the object's environment
  (:data:`KEY_ENV`; only the object's own user can read a process's environment);
* the secrets XORed with that pad, written 0600 next to the object's status file
  (:func:`sealed_path`), which the Flow process reads and deletes at once.

XOR with a fresh random pad used once is perfectly hiding and needs no library; the pad is
never reused (one per start). The Flow process removes the key from its environment before
it starts any child, so Executors never inherit it.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
from collections.abc import Mapping, MutableMapping

KEY_ENV = "JINAD_FAB_HANDOFF_KEY"
"""The environment variable carrying the pad (hex)."""

SUFFIX = ".sealed"


def sealed_path(status_file: str | os.PathLike[str]) -> pathlib.Path:
    """Where the sealed half lives: the status file's name with ``.sealed`` instead of ``.json``."""
    return pathlib.Path(status_file).with_suffix(SUFFIX)


def seal(values: Mapping[str, str]) -> tuple[str, bytes]:
    """(pad as hex for the environment, sealed bytes for the file)."""
    plain = json.dumps(dict(values), sort_keys=True).encode()
    pad = secrets.token_bytes(len(plain))
    return pad.hex(), bytes(a ^ b for a, b in zip(plain, pad, strict=True))


def unseal(key_hex: str, sealed: bytes) -> dict[str, str]:
    pad = bytes.fromhex(key_hex)
    if len(pad) != len(sealed):
        raise ValueError("the handoff key does not match the sealed file")
    data = json.loads(bytes(a ^ b for a, b in zip(sealed, pad, strict=True)))
    if not isinstance(data, dict):
        raise ValueError("the sealed file holds no mapping")
    return {str(k): str(v) for k, v in data.items()}


def write_sealed(path: pathlib.Path, sealed: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(sealed)


def take(status_file: str | None, environ: MutableMapping[str, str]) -> dict[str, str]:
    """In the started process: read and delete the sealed file, drop the key from ``environ``.

    Nothing handed over (no key): an empty mapping.
    """
    key = environ.pop(KEY_ENV, None)
    if not key or not status_file:
        return {}
    path = sealed_path(status_file)
    try:
        sealed = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    return unseal(key, sealed)


def peer_key(address: str, default_port: int = 8000) -> str:
    """A daemon address as ``host:port`` (scheme dropped, port 8000 when left out), the key tokens
    are handed over by; the same form as :attr:`jinad_fab.remote.DaemonAddress.netloc`."""
    import urllib.parse

    text = str(address).strip()
    if "://" not in text:
        if text.count(":") > 1 and not text.startswith("["):
            text = f"[{text}]"
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    host = parts.hostname or ""
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hosts_named(flow: object) -> list[str]:
    """The ``host:`` and ``fallback_hosts:`` values of a parsed Flow YAML mapping's Pods, and the
    daemons of a spread Pod's ``spread:`` (the daemons it may call)."""
    if not isinstance(flow, Mapping):
        return []
    pods = flow.get("pods", flow.get("executors")) or []
    if isinstance(pods, Mapping):
        pods = list(pods.values())
    out = []
    for pod in pods if isinstance(pods, list) else []:
        if not isinstance(pod, Mapping):
            continue
        for h in [pod.get("host"), *(pod.get("fallback_hosts") or [] if isinstance(pod.get("fallback_hosts"), list)
                                    else [])]:
            if isinstance(h, str) and h.strip():
                out.append(h)
        spread = pod.get("spread")
        if isinstance(spread, Mapping):
            for entry in [*(spread.get("parts") or []), *(spread.get("hosts") or [])]:
                h = entry.get("host") if isinstance(entry, Mapping) else None
                if isinstance(h, str) and h.strip():
                    out.append(h)
    return out

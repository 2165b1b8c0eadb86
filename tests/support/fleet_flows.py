"""The fleet Flow the deploy tests run (loopback daemons, TLS, the multihost tier): a text encoder
on a ``cpu`` host and an ``_index`` on a ``gpu`` host, plus a client that searches without pause.

- ``ENCODER``: ``HashEncoder``, a deterministic embedding of a Document's text (the same text gives
  the same vector on any host, so the nearest match of "document number 7" is Document 7); it
  tags each Document with the host and process that encoded it and its ``version`` argument.
- ``embedding(text)``: the vector ``HashEncoder`` gives a text, for brute-force checks.
- ``flow_yaml(...)``: the Flow YAML, ``encode (cpu) -> index (gpu)`` with the Gateway on a cpu host.
- ``write_project(folder, ...)``: both files in a folder, as an operator's project holds them.
- ``Searcher``: a thread sending one-Document searches, recording each one's time and outcome.

benchmarks/fleet_flow_up.py keeps its own copy: benchmarks run as plain scripts that never import
the test tree, and its encoder is the workload it measures (a test may change this one freely).
"""

from __future__ import annotations

import pathlib
import textwrap
import threading
import time
import zlib
from typing import Any

import httpx
import numpy as np

ENCODER = textwrap.dedent("""
    import os
    import socket
    import zlib

    import numpy as np

    from jinad_fab import Executor, requests

    BUILD = "1"


    class HashEncoder(Executor):
        def __init__(self, version="v1", **kwargs):
            super().__init__(**kwargs)
            self.version = version

        @requests
        def encode(self, docs, parameters):
            for d in docs:
                rng = np.random.default_rng(zlib.crc32(d.text.encode()))
                d.embedding = rng.standard_normal(16).astype("float32")
                d.tags["encoded_on"] = socket.gethostname()
                d.tags["version"] = self.version
                d.tags["pid"] = os.getpid()
                d.tags["build"] = BUILD
""")
"""Change ``BUILD = "1"`` to make a changed file (a new release that cannot be rolled in place)."""


def embedding(text: str) -> np.ndarray:
    """The vector ``HashEncoder`` gives ``text`` (for brute-force checks of search answers)."""
    return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(16).astype("float32")


def flow_yaml(version: str = "v1", *, index: str = "index", parallel: int = 1, tail: bool = False,
              options: dict[str, Any] | None = None) -> str:
    """``encode`` (HashEncoder, ``parallel`` replicas, ``hosts: cpu``) -> ``index`` (``_index``,
    ``hosts: gpu``) [-> ``tail`` (``_pass``, ``hosts: cpu``)], the Gateway on a cpu host, HTTP;
    ``options`` adds Flow options (``lost_after: 4``)."""
    flow_with = "".join(f"\n  {k}: {v}" for k, v in (options or {}).items())
    return (f"!Flow\nversion: '1'\nwith:\n  protocol: http{flow_with}\ngateway:\n  hosts: cpu\npods:\n"
            f"  - name: encode\n    uses: HashEncoder\n    uses_with: {{version: {version}}}\n"
            f"    py_modules: [encoder.py]\n    hosts: cpu\n"
            + (f"    parallel: {parallel}\n" if parallel != 1 else "")
            + f"  - name: {index}\n    uses: _index\n    hosts: gpu\n"
            + ("  - name: tail\n    uses: _pass\n    hosts: cpu\n" if tail else ""))


def write_project(folder: pathlib.Path, version: str = "v1", **flow: Any) -> pathlib.Path:
    """``encoder.py`` and ``flow.yml`` (see :func:`flow_yaml`) in ``folder``; returns the Flow file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.py").write_text(ENCODER)
    path = folder / "flow.yml"
    path.write_text(flow_yaml(version, **flow))
    return path


def documents(n: int = 20) -> list[dict[str, Any]]:
    """What the tests index: Document i's text is ``document number i``."""
    return [{"id": str(i), "text": f"document number {i}"} for i in range(n)]


class Searcher(threading.Thread):
    """A client searching without pause (``pause`` seconds between requests), each answer checked
    against the known nearest Document. ``results`` holds ``(time sent, exact, detail)`` per
    request: detail is the encoder's version for an exact answer, else what went wrong."""

    def __init__(self, base: str, *, n: int = 20, timeout: float = 30.0, pause: float = 0.0):
        super().__init__(daemon=True)
        self.base, self.n, self.timeout, self.pause = base, n, timeout, pause
        self.stop = threading.Event()
        self.results: list[tuple[float, bool, str]] = []

    @property
    def ok(self) -> int:
        return sum(1 for _, exact, _ in self.results if exact)

    @property
    def failed(self) -> list[str]:
        return [detail for _, exact, detail in self.results if not exact]

    @property
    def versions(self) -> set[str]:
        return {detail for _, exact, detail in self.results if exact}

    def failed_between(self, start: float, end: float = float("inf")) -> list[tuple[float, str]]:
        """The failures among the requests sent in [start, end), with their time from ``start``."""
        return [(round(sent - start, 2), detail) for sent, exact, detail in self.results
                if not exact and start <= sent < end]

    def run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            i = 0
            while not self.stop.is_set():
                n, sent = i % self.n, time.monotonic()
                try:
                    r = client.post(f"{self.base}/search", json={
                        "data": [{"id": "q", "text": f"document number {n}"}], "parameters": {"top_k": 1}})
                    hit = r.json()["data"][0] if r.status_code == 200 else None
                    if hit is not None and hit["matches"] and hit["matches"][0]["id"] == str(n):
                        self.results.append((sent, True, str(hit["tags"].get("version"))))
                    else:
                        self.results.append((sent, False, f"{r.status_code}: {r.text[:300]}"))
                except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:  # counted, never hidden
                    self.results.append((sent, False, repr(exc)))
                i += 1
                if self.pause:
                    time.sleep(self.pause)

    def __enter__(self) -> Searcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(60)

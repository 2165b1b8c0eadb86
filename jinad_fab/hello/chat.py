"""``jinad-fab hello chat``: a search page over the jinad-fab FAQ shipped in the package.

The Flow is ``encoder`` (TF-IDF with sublinear tf over normalised words and word pairs, with a
small synonym list of the FAQ's own terms, fitted on the shipped questions and answers when the
command starts) -> ``index`` (the built-in ``_index``, inner product, which on these vectors is the
cosine similarity). Its HTTP Gateway serves one static page that calls the Gateway's own
``POST /search`` and says "no good match" when the best answer scores under :data:`MIN_SCORE`.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.resources
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable
from typing import Any

from .. import Document, DocumentArray, Flow
from ..errors import BadInput
from ._common import Progress, Timings, pea_env, writable_dir
from .encoders import TextEncoder, fit_tfidf

WORKSPACE = "hello-chat-workspace"
# Under this cosine the best answer is no answer: queries whose words the FAQ never uses score 0,
# the held-out paraphrases of real questions score 0.3 and more (tests/integration/hello).
MIN_SCORE = 0.15


@dataclasses.dataclass
class ChatOptions:
    workdir: str | os.PathLike = "hello-chat"
    port: int = 8080
    host: str = "127.0.0.1"
    dim: int = 256  # at least the number of pairs keeps every dimension: scores are exact cosines
    shards: int = 2
    timeout_ready: float = 60.0
    verbose: bool = False  # the Peas' INFO logs too


def _asset(*parts: str):
    return importlib.resources.files("jinad_fab").joinpath("assets", "hello", *parts)


def load_corpus() -> list[dict[str, str]]:
    """The shipped question/answer pairs: ``{"id", "topic", "question", "answer"}``."""
    return json.loads(_asset("chat_corpus.json").read_text("utf-8"))["pairs"]


def corpus_docs(pairs: list[dict[str, str]]) -> DocumentArray:
    """One Document per pair: the question is what gets encoded; the answer travels in tags."""
    return DocumentArray(Document(id=p["id"], text=p["question"], tags={"answer": p["answer"], "topic": p["topic"]})
                         for p in pairs)


def check_port(host: str, port: int) -> None:
    """Fail before starting anything when the port is taken (the Gateway would fail later, slower)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # like the Gateway's own listener: connections in TIME_WAIT from an earlier run do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInput(f"port {port} on {host} is already in use; choose another with --port") from exc
            raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def build_flow(opts: ChatOptions, model: str, workspace: str, static_dir: str) -> Flow:
    return (Flow(protocol="http", port_expose=opts.port, host=opts.host, static_dir=static_dir,
                 timeout_ready=opts.timeout_ready, env=pea_env(opts.verbose))
            .add(name="encoder", uses=TextEncoder, uses_with={"model": model})
            .add(name="index", uses="_index", shards=opts.shards,
                 uses_with={"metric": "inner_product", "top_k": 5, "durability": "normal"},
                 uses_metas={"workspace": workspace}))


def start_chat(opts: ChatOptions, progress: Progress | None = None) -> tuple[Flow, dict[str, Any]]:
    """Fit, start the Flow and index the corpus; returns the running Flow (the caller closes it)."""
    progress = progress or Progress()
    timings = Timings()
    check_port(opts.host, opts.port)
    workdir = writable_dir(opts.workdir)
    workspace = workdir / WORKSPACE
    with timings.stage("fit encoder"):
        pairs = load_corpus()
        progress.status(f"fitting TF-IDF on {len(pairs)} questions and answers")
        if workspace.exists():  # a fresh index each start: the corpus is the package's, not the user's
            shutil.rmtree(workspace)
        workspace.mkdir()
        model = str(workspace / "tfidf")
        fit = fit_tfidf([p["question"] for p in pairs], [p["answer"] for p in pairs], opts.dim, model)
        static_dir = workspace / "static"
        static_dir.mkdir()
        page = _asset("chat", "index.html").read_text("utf-8").replace("__MIN_SCORE__", repr(MIN_SCORE))
        (static_dir / "index.html").write_text(page, encoding="utf-8")
    flow = build_flow(opts, model, str(workspace), str(static_dir))
    with timings.stage("start Flow"):
        progress.status("starting the Flow (every Pod is a process)")
        flow.start()
    try:
        docs = corpus_docs(pairs)
        with timings.stage("index"), progress.bar("indexing", len(docs)) as advance:
            flow.index(docs, request_size=64, return_results=False, on_done=lambda r: advance(len(r.docs)))
    except BaseException:
        flow.close()
        raise
    shown = f"[{opts.host}]" if ":" in opts.host else opts.host
    url = f"http://{shown}:{flow.port_expose}/"
    info = {"url": url, "pairs": len(pairs), "dim": fit["dim"], "features": fit["features"], "min_score": MIN_SCORE,
            "shards": opts.shards, "timings": {**timings, "total": sum(timings.values())}}
    return flow, info


def serve_chat(opts: ChatOptions, ready: Callable[[dict[str, Any]], None], progress: Progress | None = None,
               stop: threading.Event | None = None) -> None:
    """Start, call ``ready(info)``, then serve until `stop` is set, a Pod dies, or Ctrl-C."""
    flow, info = start_chat(opts, progress)
    stop = stop or threading.Event()
    try:
        ready(info)
        while not stop.wait(0.25):
            if flow.failure is not None:
                raise BadInput(f"the chat Flow stopped: Pod {flow.failure['pod']!r}: {flow.failure['msg']}")
    finally:
        flow.close()

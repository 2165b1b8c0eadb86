"""One Flow (and one Client) called from several threads at once: every call gets its own answers.

A ZeroMQ socket is not thread-safe: with one socket shared by every thread, concurrent calls
aborted the process (libzmq's assertion) or handed one thread's answers to another.
"""

from __future__ import annotations

import concurrent.futures
import pathlib
import threading

import pytest

from jinad_fab import Document, Flow

pytestmark = pytest.mark.timeout(180)

HERE = pathlib.Path(__file__).resolve().parent
ECHO = {"uses": "Echo", "py_modules": [str(HERE / "_echo.py")]}
THREADS, CALLS = 8, 25


def _hammer(call, start: threading.Barrier, thread: int) -> list[tuple[list[str], list[str]]]:
    """``CALLS`` calls with Documents only this thread sends; returns (sent ids, answered ids) per call."""
    start.wait(timeout=30)
    seen = []
    for i in range(CALLS):
        docs = [Document(id=f"t{thread}-c{i}-d{k}", text=f"{thread}/{i}/{k}") for k in range(1 + (i % 3))]
        out = call(docs, top_k=thread)
        assert all(d.tags["parameters"] == {"top_k": thread} for d in out)
        seen.append(([d.id for d in docs], [d.id for d in out]))
    return seen


def _run_threads(call) -> None:
    start = threading.Barrier(THREADS)
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(_hammer, call, start, t) for t in range(THREADS)]
        results = [f.result(timeout=120) for f in futures]
    assert len(results) == THREADS
    for per_thread in results:
        assert len(per_thread) == CALLS
        for sent, answered in per_thread:
            assert answered == sent


@pytest.mark.parametrize("protocol", ["native", "http"])
def test_flow_search_from_eight_threads_answers_each_call_with_its_own_documents(protocol):
    with Flow(protocol=protocol).add(**ECHO) as f:
        _run_threads(f.search)
        # the Flow still answers from this thread afterwards, over the same Client
        assert [d.id for d in f.search([Document(id="after")])] == ["after"]


def test_one_client_shared_by_threads_and_closed_between_rounds():
    with Flow().add(**ECHO) as f, f.client() as client:
        _run_threads(client.search)
        client.close()  # closes every thread's socket; the next calls connect again
        _run_threads(client.search)

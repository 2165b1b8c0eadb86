"""Twenty clients searching without a pause, every answer checked against a brute-force search."""

import threading
import time

import numpy as np

from jinad_fab import Document
from tests.integration.live._live_execs import embed

CORPUS = [f"doc-{i}" for i in range(300)]
TOP_K = 5


def brute_top_k(text: str) -> list[str]:
    X = np.stack([embed(t) for t in CORPUS]).astype(np.float64)
    q = embed(text).astype(np.float64)
    d = ((X - q) ** 2).sum(-1)
    return [CORPUS[i] for i in np.argsort(d, kind="stable")[:TOP_K]]


class Load:
    """`clients` threads, each with its own Client, sending /search continuously and checking answers."""

    def __init__(self, make_client, clients: int = 20):
        self.make_client = make_client
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.wrong: list[str] = []
        self.answers: list[tuple[float, float, set[str]]] = []  # (sent, answered, versions in the request)
        self.pids: list[set] = []  # the encoder processes each answer went through
        self.lock = threading.Lock()
        self.expected = {t: brute_top_k(t) for t in CORPUS[:60]}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, i: int) -> None:
        queries = list(self.expected)
        c = self.make_client()
        n = 0
        try:
            while not self.stop.is_set():
                batch = [queries[(i * 7 + n * 3 + k) % len(queries)] for k in range(3)]
                n += 1
                sent = time.monotonic()
                try:
                    res = c.post("/search", [Document(id=f"q{i}-{n}-{k}", text=t) for k, t in enumerate(batch)],
                                 parameters={"top_k": TOP_K})
                except BaseException as exc:  # every failure counts: the test wants none
                    with self.lock:
                        self.errors.append(exc)
                    continue
                versions = {d.tags.get("version") for d in res}
                pids = {d.tags.get("pid") for d in res}
                with self.lock:
                    self.answers.append((sent, time.monotonic(), versions))
                    self.pids.append(pids)
                    for text, d in zip(batch, res):
                        got = [m.id for m in d.matches]
                        if got != self.expected[text]:
                            self.wrong.append(f"{text}: {got} != {self.expected[text]}")
        finally:
            c.close()

    def wait_answers(self, more: int, timeout: float = 60) -> None:
        start = len(self.answers)
        deadline = time.monotonic() + timeout
        while len(self.answers) < start + more and time.monotonic() < deadline and not self.errors:
            time.sleep(0.05)
        assert len(self.answers) >= start + more, "the clients stopped getting answers"

"""The Executor benchmarks/live_changes.py runs: a deterministic text embedding, its version in tags."""

import zlib

import numpy as np

from jinad_fab import Executor, requests


class LiveEncoder(Executor):
    def __init__(self, version: str = "v1", dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.version = version
        self.dim = dim

    @requests
    def encode(self, docs):
        for d in docs:
            rng = np.random.default_rng(zlib.crc32((d.text or "").encode("utf-8")))
            d.embedding = rng.random(self.dim).astype(np.float32)
            d.tags["version"] = self.version

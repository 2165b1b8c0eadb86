"""A toy encoder: hashed bag of words, L2-normalised. Runs wherever its Pod is placed."""

import zlib

import numpy as np

from jinad_fab import Executor, requests


class WordHashEncoder(Executor):
    def __init__(self, dim: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    @requests(on=["/index", "/search"])
    def encode(self, docs, **kwargs):
        m = np.zeros((len(docs), self.dim), dtype=np.float32)
        for i, d in enumerate(docs):
            for word in (d.text or "").lower().split():
                m[i, zlib.crc32(word.encode()) % self.dim] += 1.0
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)
        docs.embeddings = m

"""Executors the missing-shard tests run inside real Pea processes."""

import os
import time
import zlib

import numpy as np

from jinad_fab import Document, Executor, requests

DIM = 8


def embed(text: str) -> np.ndarray:
    """A deterministic embedding of a text (the tests compute it too, for the brute-force check)."""
    return np.random.default_rng(zlib.crc32(text.encode("utf-8"))).standard_normal(DIM).astype(np.float32)


class HashEncoder(Executor):
    @requests
    def encode(self, docs):
        for d in docs:
            d.embedding = embed(d.text or "")


class ShardHold(Executor):
    """Each shard answers with a match naming itself; a shard named in ``parameters["hold"]`` first
    writes ``<parameters["mark"]>.<shard>`` and holds the request until its process is killed."""

    def _hold(self, parameters):
        shard = self.runtime_args.get("shard_id")
        if str(shard) in (parameters.get("hold") or ()):
            with open(f"{parameters['mark']}.{shard}", "w") as f:
                f.write(str(os.getpid()))
            time.sleep(60)
        return shard

    @requests(on="/search")
    def search(self, docs, parameters):
        shard = self._hold(parameters)
        for d in docs:
            d.matches.append(Document(id=f"shard{shard}"))

    @requests(on="/index")
    def index(self, docs, parameters):
        shard = self._hold(parameters)
        for d in docs:
            d.tags["shard"] = shard

    @requests(on="/lookup", idempotent=True)
    def lookup(self, docs):
        for d in docs:
            d.tags["shard"] = self.runtime_args.get("shard_id")

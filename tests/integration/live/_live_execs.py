"""Executors the live-change tests run inside real Pea processes."""

import os
import time
import zlib

import numpy as np

from jinad_fab import Executor, requests

DIM = 8


def embed(text: str) -> np.ndarray:
    """A deterministic embedding of a text (the tests compute it too, for the brute-force check)."""
    return np.random.default_rng(zlib.crc32(text.encode("utf-8"))).random(DIM).astype(np.float32)


class VersionedEncoder(Executor):
    """Embeds each Document's text and stamps this replica's version (and process) into its tags."""

    def __init__(self, version: str = "v1", delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.version = version
        self.delay = delay

    @requests
    def encode(self, docs):
        if self.delay:
            time.sleep(self.delay)
        for d in docs:
            d.embedding = embed(d.text or "")
            d.tags["version"] = self.version
            d.tags["pid"] = os.getpid()


class Held(Executor):
    """Holds requests for a while: one endpoint safe to run twice, one that is not."""

    @requests(on="/lookup", idempotent=True)
    def lookup(self, docs, parameters):
        time.sleep(float(parameters.get("hold", 0)))
        for d in docs:
            d.tags["looked_up_by"] = os.getpid()

    @requests(on="/charge")
    def charge(self, docs, parameters):
        time.sleep(float(parameters.get("hold", 0)))
        for d in docs:
            d.tags["charged_by"] = os.getpid()

    @requests(on="/pid")
    def pid(self, docs):
        for d in docs:
            d.tags["pid"] = os.getpid()

"""Executors the runtime tests run inside real Pea processes."""

import os
import sys
import time

import numpy as np

from jinad_fab import Document, DocumentArray, Executor, requests


class Stamp(Executor):
    """Records which process and Pod saw each Document."""

    @requests
    def stamp(self, docs, parameters):
        if parameters.get("sleep"):
            time.sleep(parameters["sleep"])
        for d in docs:
            d.tags.setdefault("seen_by", []).append(f"{self.metas['name']}:{os.getpid()}")


class Boom(Executor):
    @requests(on="/index")
    def boom(self, docs):
        raise ValueError(f"cannot index {docs[0].id}")

    @requests(on="/search")
    def fine(self, docs):
        for d in docs:
            d.tags["ok"] = True


class Die(Executor):
    @requests
    def die(self, parameters):
        if parameters.get("die"):
            os._exit(7)


class Encode(Executor):
    """Sets a deterministic embedding from the text length; replaces docs on /replace."""

    @requests(on="/index")
    def encode(self, docs):
        docs.embeddings = np.array([[len(d.text or ""), 1.0] for d in docs], dtype=np.float32)

    @requests(on="/replace")
    def replace(self, docs):
        return DocumentArray([Document(id=d.id + "!", text="new") for d in docs])


class ShardEcho(Executor):
    """Each shard answers a search with one match naming the shard, scored by shard id."""

    @requests(on="/search")
    def search(self, docs, parameters, header):
        shard = self.runtime_args.get("shard_id")
        header["merge"] = {"score": "d", "ascending": True, "top_k": parameters.get("top_k", 10)}
        for d in docs:
            d.matches.append(Document(id=f"shard{shard}", scores={"d": float(shard)}))

    @requests(on="/index")
    def index(self, docs):
        shard = self.runtime_args.get("shard_id")
        for d in docs:
            d.tags["shard"] = shard


class EnvEcho(Executor):
    """Tags each Document with the GPU-related environment its Pea process received."""

    @requests
    def echo(self, docs):
        for d in docs:
            d.tags["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
            d.tags["pid"] = os.getpid()


class SlowStart(Executor):
    """Takes `seconds` to construct: a Pea that is slow to become ready."""

    def __init__(self, seconds: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        print("SlowStart: constructing", file=sys.stderr, flush=True)
        time.sleep(seconds)

    @requests
    def mark(self, docs):
        for d in docs:
            d.tags["slow"] = True


class TwoWays(Executor):
    """/index upper-cases; `lower` is bound to nothing until uses_requests names it."""

    @requests(on="/index")
    def upper(self, docs):
        for d in docs:
            d.text = d.text.upper()

    def lower(self, docs):
        for d in docs:
            d.text = d.text.lower()


class Record(Executor):
    """Appends the text of every Document it sees to a file (what a test reads back)."""

    def __init__(self, path: str, **kwargs):
        super().__init__(**kwargs)
        self.path = path

    @requests
    def record(self, docs):
        with open(self.path, "a", encoding="utf-8") as fh:
            for d in docs:
                fh.write(f"{d.text}\n")

"""CRUD with the built-in `_index`: the four guardians of the sky.

Run it with ``python examples/crud/run.py``; the comments say what each search prints.
"""

import tempfile

import numpy as np

from jinad_fab import Document, DocumentArray, Flow


def show(results: DocumentArray) -> None:
    print(" ".join(f"{m.id} {m.scores['euclidean']:g}" for m in results[0].matches))


def main(workspace: str) -> None:
    docs = DocumentArray([
        Document(id="🐲", embedding=np.array([0, 0]), tags={"guardian": "Azure Dragon", "position": "East"}),
        Document(id="🐦", embedding=np.array([1, 0]), tags={"guardian": "Vermilion Bird", "position": "South"}),
        Document(id="🐢", embedding=np.array([0, 1]), tags={"guardian": "Black Tortoise", "position": "North"}),
        Document(id="🐯", embedding=np.array([1, 1]), tags={"guardian": "White Tiger", "position": "West"}),
    ])
    f = Flow(workspace=workspace).add(uses="_index")
    with f:
        f.index(docs)
        show(f.search(docs[0], parameters={"top_k": 3}))
        # 🐲 0 🐦 1 🐢 1
        docs[0].embedding = np.array([1, 1])
        f.update(docs[0])
        show(f.search(docs[0], parameters={"top_k": 3}))
        # 🐲 0 🐯 0 🐦 1      (the Dragon now sits where the Tiger is)
        f.delete(["🐦", "🐲"])
        show(f.search(docs[0], parameters={"top_k": 3}))
        # 🐯 0 🐢 1           (only two guardians are left)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as ws:
        main(ws)

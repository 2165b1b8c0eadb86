"""The CRUD example of the Jina 2.x README, as Jina users type it: only the import line changed.

Run it from a scratch directory (the index is kept in ./workspace, so each `with f:` block, a new
start of the Flow, finds what the one before stored): ``python examples/crud/jina2.py``.
"""

import numpy as np

from jinad_fab import Document, Flow

docs = [Document(id='🐲', embedding=np.array([0, 0, 0]), tags={'guardian': 'Azure Dragon', 'position': 'East'}),
        Document(id='🐦', embedding=np.array([1, 0, 0]), tags={'guardian': 'Vermilion Bird', 'position': 'South'}),
        Document(id='🐢', embedding=np.array([0, 1, 0]), tags={'guardian': 'Black Tortoise', 'position': 'North'}),
        Document(id='🐯', embedding=np.array([0, 0, 1]), tags={'guardian': 'White Tiger', 'position': 'West'})]

f = Flow().add(uses='_index')

with f:
    f.index(docs, on_done=print)

with f:
    # 🐲 itself at distance 0, then two of its neighbours at distance 1
    f.search(docs[0], top_k=3, on_done=lambda x: print(x.docs[0].matches))

with f:
    # the Dragon moves to where the Tiger is: searching the Tiger finds both at distance 0
    f.update(Document(id='🐲', embedding=np.array([0, 0, 1]), tags={'guardian': 'Azure Dragon', 'position': 'East'}))
    f.search(docs[3], top_k=2, on_done=lambda x: print(x.docs[0].matches))

with f:
    # the Bird and the Tortoise leave: two guardians are left
    f.delete(['🐦', '🐢'])
    f.search(docs[0], top_k=3, on_done=lambda x: print(x.docs[0].matches))

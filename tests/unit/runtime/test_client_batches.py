"""The Client cuts inputs into requests; lists of texts and arrays are built column-wise."""

import numpy as np
import pytest

from jinad_fab import Document
from jinad_fab.client import batches
from jinad_fab.errors import BadDocument, BadInput
from jinad_fab.wire import decode_docs, encode_docs


@pytest.mark.parametrize("make", [list, tuple, iter, lambda xs: (x for x in xs)])
def test_texts_become_documents_with_fresh_ids_in_requests(make):
    texts = [f"text {i}" for i in range(250)]
    got = list(batches(make(texts), 100))
    assert [len(b) for b in got] == [100, 100, 50]
    docs = [d for b in got for d in b]
    assert [d.text for d in docs] == texts
    assert len({d.id for d in docs}) == 250 and all(len(d.id) == 32 for d in docs)
    d = docs[7]
    assert (d.uri, d.mime_type, d.buffer, d.embedding, d.blob, d.has("tags"), d.has("chunks")) == (
        None, None, None, None, None, False, False)
    back = decode_docs(encode_docs(got[0]))  # and they travel like any Document
    assert [x.text for x in back] == texts[:100] and [x.id for x in back] == [x.id for x in got[0]]


def test_a_matrix_becomes_one_blob_per_row_without_copies():
    m = np.arange(30, dtype=np.float32).reshape(10, 3)
    got = list(batches(m, 4))
    assert [len(b) for b in got] == [4, 4, 2]
    assert got[1][0].blob.tolist() == [12.0, 13.0, 14.0]
    assert np.shares_memory(got[1][0].blob, m)


def test_mixed_inputs_still_go_through_the_checks():
    got = list(batches(["a", {"text": "b"}, b"\x00", Document(id="d", text="c"), np.zeros(2)], 10))[0]
    assert [d.text for d in got[:2]] == ["a", "b"] and got[2].buffer == b"\x00" and got[3].id == "d"
    assert got[4].blob.tolist() == [0.0, 0.0]
    with pytest.raises(BadInput, match="cannot make a Document from int"):
        list(batches(["a", 3], 10))
    with pytest.raises(BadDocument, match="text must be str"):
        list(batches(["a", {"text": 1}], 10))

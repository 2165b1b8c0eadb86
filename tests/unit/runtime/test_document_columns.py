"""DocumentArrays held as columns (made from texts or matrices, or received): built into Documents
only when one is asked for, and equal in every way to the Documents built one by one."""

import numpy as np
import orjson

from jinad_fab import Document, DocumentArray
from jinad_fab.client import batches
from jinad_fab.wire import _decode_documents, decode_docs, encode_docs


def _received(frames):
    return [f.tobytes() if isinstance(f, np.ndarray) else bytes(f) for f in frames]


def _columns(n=6, dim=4):
    docs = DocumentArray.empty(n)
    docs.texts = [f"text {i}" if i != 2 else None for i in range(n)]
    docs.embeddings = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    return docs


def _one_by_one(docs):
    return DocumentArray([Document(id=i, text=t, embedding=e) for i, t, e in zip(docs.ids, docs.texts, docs.embeddings)])


def test_columns_encode_to_the_very_frames_of_the_same_documents_built_one_by_one():
    docs = _columns()
    eager = _one_by_one(docs)
    assert docs._list is None  # reading ids, texts and embeddings built nothing
    for part in (slice(None), slice(1, 4), slice(4, 99), slice(3, 3)):
        assert _received(encode_docs(docs[part])) == _received(encode_docs(eager[part]))
    assert docs._list is None
    assert docs == eager  # comparing builds the Documents


def test_a_lazily_decoded_answer_equals_the_eagerly_decoded_one():
    sent = _columns()
    frames = _received(encode_docs(sent))
    lazy = decode_docs(frames)
    eager = _decode_documents(orjson.loads(frames[0]), frames[1:])
    assert lazy._list is None and eager._list is not None
    assert len(lazy) == 6 and lazy.ids == eager.ids and lazy.texts == eager.texts
    assert np.array_equal(lazy.embeddings, eager.embeddings) and not lazy.embeddings.flags.writeable
    assert lazy[2:5].ids == eager[2:5].ids
    assert lazy._list is None  # nothing asked for a Document yet
    assert lazy[0].text == "text 0" and lazy[2].text is None
    assert lazy == eager == sent
    # what a Pea sends on after reading it equals what it received
    assert _received(encode_docs(lazy)) == frames


def test_slices_share_their_documents_as_slices_of_a_list_do():
    docs = _columns()
    head, tail = docs[:3], docs[3:]
    tail[0].text = "changed"  # builds the Documents, once for every slice
    assert docs[3].text == "changed" and docs[3] is tail[0]
    assert docs.texts[3] == "changed" and docs[2:4].texts == [None, "changed"]
    head[1].embedding = np.zeros(4, dtype=np.float32)
    assert not docs.embeddings[1].any() and docs.embeddings[0].any()
    body = orjson.loads(encode_docs(docs[1:4])[0])
    assert body["text"] == ["text 1", None, "changed"]


def test_client_batches_of_texts_and_of_matrix_rows_are_columns():
    texts = [f"t{i}" for i in range(250)]
    got = list(batches(texts, 100))
    assert [len(b) for b in got] == [100, 100, 50] and all(b._list is None for b in got)
    assert sum((b.texts for b in got), []) == texts
    m = np.random.default_rng(1).random((150, 3, 2))
    got = list(batches(m, 100))
    assert [len(b) for b in got] == [100, 50]
    back = decode_docs(_received(encode_docs(got[1])))
    assert np.array_equal(back[7].blob, m[107]) and back[7].blob.shape == (3, 2)
    assert _received(encode_docs(got[1])) == _received(encode_docs(DocumentArray(
        Document(id=d.id, blob=d.blob) for d in got[1])))


def test_bad_column_values_are_refused_naming_the_document():
    docs = DocumentArray.empty(2)
    try:
        docs.texts = ["ok", 3]
    except Exception as exc:  # noqa: BLE001 - checked below
        assert type(exc).__name__ == "BadDocument" and docs.ids[1] in str(exc)
    else:
        raise AssertionError("a non-str text was accepted")
    try:
        docs.embeddings = np.zeros((3, 2))
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "BadDocument"
    else:
        raise AssertionError("3 embeddings for 2 Documents were accepted")

"""The codec, tested without sockets."""

import numpy as np
import orjson
import pytest

from jinad_fab import Document, DocumentArray
from jinad_fab.errors import BadDocument, BadInput
from jinad_fab.wire import Message, decode_docs, doc_count, encode_docs, new_header


def _as_received(frames):
    # what a socket hands over: plain bytes per frame
    return [bytes(memoryview(f).cast("B")) if not isinstance(f, bytes) else f for f in frames]


def test_round_trip_keeps_every_field_and_nesting():
    docs = DocumentArray([
        Document(id="1", text="t", uri="u", mime_type="text/plain", tags={"a": {"b": [1]}}, buffer=b"xyz",
                 embedding=np.arange(4, dtype=np.float32), blob=np.ones((2, 2), dtype=np.uint8),
                 scores={"s": 0.25},
                 chunks=[Document(id="1.c", embedding=np.zeros(2, dtype=np.float64))],
                 matches=[Document(id="1.m", scores={"euclidean": 1.5},
                                   matches=[Document(id="1.m.m", text="deep")])]),
        Document(id="2"),
    ])
    back = decode_docs(_as_received(encode_docs(docs)))
    assert back == docs
    assert back[0].chunks[0].embedding.dtype == np.float64
    assert back[0].blob.shape == (2, 2) and back[0].blob.dtype == np.uint8
    assert back[1].embedding is None and not back[1].matches


@pytest.mark.parametrize("field, value", [
    ("uri", "u"), ("mime_type", "text/plain"), ("tags", {"k": 1}), ("scores", {"s": 0.5}), ("buffer", b"\x00b"),
    ("blob", np.arange(3, dtype=np.int16)), ("chunks", [Document(id="c", text="sub")]),
    ("matches", [Document(id="m", scores={"cosine": 0.1})]),
])
def test_a_field_set_only_by_the_last_document_of_a_batch_still_travels(field, value):
    # the encoder skips fields no Document sets in one pass that stops at the first one set
    docs = DocumentArray([Document(id=str(i), text=f"t{i}") for i in range(5)])
    setattr(docs[4], field, value)
    body = orjson.loads(encode_docs(docs)[0])
    assert field in body and set(body) <= {"n", "id", "text", field}
    back = decode_docs(_as_received(encode_docs(docs)))
    assert back == docs


def test_same_shape_embeddings_travel_as_one_frame_and_decode_as_views():
    m = np.random.default_rng(0).random((100, 128), dtype=np.float32)
    docs = DocumentArray(Document() for _ in range(100))
    docs.embeddings = m
    frames = encode_docs(docs)
    assert len(frames) == 2  # body + one stacked array
    assert orjson.loads(frames[0])["embedding"]["stack"][2] == [100, 128]
    received = _as_received(frames)
    back = decode_docs(received)
    mat = back.embeddings
    assert np.array_equal(mat, m)
    assert np.shares_memory(mat, np.frombuffer(received[1], dtype=np.float32))  # zero-copy view
    assert back[7].embedding.base is not None and np.shares_memory(back[7].embedding, mat)


def test_ragged_embeddings_travel_one_frame_each():
    docs = DocumentArray([Document(embedding=np.ones(2)), Document(), Document(embedding=np.ones(3))])
    frames = encode_docs(docs)
    assert len(frames) == 3
    back = decode_docs(_as_received(frames))
    assert back[0].embedding.shape == (2,) and back[1].embedding is None and back[2].embedding.shape == (3,)


def test_forwarding_does_not_decode_documents():
    docs = DocumentArray([Document(text=str(i)) for i in range(10)])
    wire = _as_received(Message(new_header("r1", "/index", {"k": 1}), docs=docs).frames())
    msg = Message.from_frames(wire)
    assert msg.request_id == "r1" and msg.endpoint == "/index" and msg.parameters == {"k": 1}
    assert doc_count(msg) == 10
    out = msg.frames()
    assert not msg.decoded
    assert out[1] is wire[1]  # the body frame is forwarded as the same object
    assert [d.text for d in Message.from_frames(_as_received(out)).docs] == [str(i) for i in range(10)]


def test_malformed_messages_are_bad_input():
    with pytest.raises(BadInput):
        Message.from_frames([b"{"])
    with pytest.raises(BadInput):
        Message.from_frames([b"not json", b"{}"])
    with pytest.raises(BadInput):
        _ = Message.from_frames([b'{"rid":"x"}', b'{"n": 2, "id": ["only-one"]}']).docs


def test_non_json_tags_name_the_document():
    with pytest.raises(BadDocument) as info:
        encode_docs([Document(id="weird", tags={"x": object()})])
    assert info.value.doc_id == "weird"

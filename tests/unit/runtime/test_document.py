import numpy as np
import pytest

from jinad_fab import Document, DocumentArray
from jinad_fab.errors import BadDocument


def test_auto_id_is_unique_hex():
    ids = {Document().id for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_fields_and_nested_round_trip_through_dict():
    d = Document(id="a", text="hello", tags={"k": [1, 2]}, embedding=[1.0, 2.0], buffer=b"\x00\x01",
                 uri="file:///x.png", mime_type="image/png", scores={"euclidean": 0.5},
                 chunks=[Document(id="c", text="chunk")],
                 matches=[Document(id="m", scores={"euclidean": 1}, matches=[Document(id="mm")])])
    back = Document.from_dict(d.to_dict())
    assert back == d
    assert back.embedding.dtype == np.float32
    assert back.matches[0].matches[0].id == "mm"
    assert back.chunks["c"].text == "chunk"
    assert back.buffer == b"\x00\x01"


@pytest.mark.parametrize("field,value", [("embedding", ["a", "b"]), ("blob", [object()]), ("embedding", "xyz")])
def test_non_numeric_arrays_are_refused_naming_the_doc(field, value):
    with pytest.raises(BadDocument) as info:
        Document(id="bad-one", **{field: value})
    assert info.value.doc_id == "bad-one"
    assert "bad-one" in str(info.value)


def test_unknown_field_and_bad_text_refused():
    with pytest.raises(BadDocument, match="unknown field"):
        Document(colour="red")
    with pytest.raises(BadDocument, match="text must be str"):
        Document(text=3)


def test_embeddings_matrix_is_not_copied_when_rows_share_one_buffer():
    da = DocumentArray(Document() for _ in range(5))
    m = np.arange(15, dtype=np.float32).reshape(5, 3)
    da.embeddings = m
    assert da.embeddings is m
    assert np.shares_memory(da[2].embedding, m)
    da[2].embedding = np.zeros(3, dtype=np.float32)  # replaced row: the matrix must be rebuilt
    out = da.embeddings
    assert out is not m and out[2].tolist() == [0, 0, 0] and out[3].tolist() == [9, 10, 11]


def test_embeddings_with_missing_or_ragged_rows_name_a_doc():
    da = DocumentArray([Document(id="a", embedding=[1, 2]), Document(id="b")])
    with pytest.raises(BadDocument, match="'b'"):
        _ = da.embeddings
    da = DocumentArray([Document(id="a", embedding=[1, 2]), Document(id="b", embedding=[1, 2, 3])])
    with pytest.raises(BadDocument, match="different shapes"):
        _ = da.embeddings


def test_document_array_lookup_slice_and_type_checks():
    da = DocumentArray([Document(id=str(i)) for i in range(4)])
    assert da["2"].id == "2" and "3" in da and "9" not in da
    assert isinstance(da[1:3], DocumentArray) and da[1:3].ids == ["1", "2"]
    with pytest.raises(KeyError):
        da["9"]
    with pytest.raises(BadDocument):
        da.append("not a doc")


def test_slices_keep_a_view_of_the_matrix_until_a_row_is_replaced():
    da = DocumentArray(Document() for _ in range(10))
    m = np.arange(30, dtype=np.float32).reshape(10, 3)
    da.embeddings = m
    part = da[2:5]
    assert np.shares_memory(part.stacked_embeddings(), m) and part.embeddings.tolist() == m[2:5].tolist()
    da[3].embedding = np.zeros(3, dtype=np.float32)
    assert da[2:5].stacked_embeddings() is None  # the slice holding the replaced row re-stacks
    assert da[2:5].embeddings[1].tolist() == [0, 0, 0]
    assert da[5:8].stacked_embeddings() is not None  # other slices still share the matrix

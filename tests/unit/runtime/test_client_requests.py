"""How the client cuts a DocumentArray held as columns into requests (client.batches)."""

from jinad_fab import DocumentArray
from jinad_fab.client import batches
from jinad_fab.wire import decode_docs, encode_docs


def test_requests_cut_from_columns_carry_each_range_once_and_in_order():
    docs = DocumentArray.empty(7)
    docs.texts = [f"t{i}" for i in range(7)]
    got = [decode_docs(encode_docs(b)) for b in batches(docs, 3)]
    assert [len(b) for b in got] == [3, 3, 1]
    assert [d.id for b in got for d in b] == docs.ids and [d.text for b in got for d in b] == docs.texts


def test_a_document_changed_while_requests_are_cut_is_sent_as_changed():
    docs = DocumentArray.empty(5)
    docs.texts = ["a", "b", "c", "d", "e"]
    it = batches(docs, 2)
    assert next(it).texts == ["a", "b"]
    docs[2].text = "C"  # builds the Documents: from now on they hold the truth, not the columns
    rest = list(it)
    assert [b.texts for b in rest] == [["C", "d"], ["e"]]
    assert [d.text for d in decode_docs(encode_docs(rest[0]))] == ["C", "d"]

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


class _Run:
    """What Client._fill reads of a call: the requests in flight and where its inputs come from."""

    def __init__(self, in_memory: bool):
        self.inflight: dict[str, int] = {}
        self.in_memory = in_memory


def _filler(in_memory: bool, n: int, prefetch: int = 4):
    from jinad_fab.client import Client

    client = Client(port=1, prefetch=prefetch)
    run = _Run(in_memory)
    log: list = []

    def items():
        for i in range(n):
            log.append(("pulled", i))
            yield i

    def make(i: int) -> int:
        run.inflight[str(i)] = i
        return i

    def fill() -> bool:
        return client._fill(run, items_iter, make, lambda burst: log.append(("sent", list(burst))))

    items_iter = items()
    return run, log, fill


def test_requests_from_a_generator_leave_one_by_one_before_its_next_item_is_asked_for():
    run, log, fill = _filler(in_memory=False, n=6)
    assert fill() is False
    assert log == [("pulled", 0), ("sent", [0]), ("pulled", 1), ("sent", [1]), ("pulled", 2), ("sent", [2]),
                   ("pulled", 3), ("sent", [3])]
    del run.inflight["0"]  # one answer: one free place, filled at once
    log.clear()
    assert fill() is False and log == [("pulled", 4), ("sent", [4])]


def test_requests_from_memory_leave_in_bursts_once_half_the_window_is_answered():
    run, log, fill = _filler(in_memory=True, n=7)
    assert fill() is False
    assert log == [("pulled", 0), ("pulled", 1), ("pulled", 2), ("pulled", 3), ("sent", [0, 1, 2, 3])]
    log.clear()
    del run.inflight["0"]
    assert fill() is False and log == []  # 3 of 4 in flight: not yet
    del run.inflight["1"]
    assert fill() is False
    assert log == [("pulled", 4), ("pulled", 5), ("sent", [4, 5])]
    log.clear()
    run.inflight.clear()
    assert fill() is True and log == [("pulled", 6), ("sent", [6])]  # the inputs ran out


def _answers_to(run, inputs: DocumentArray, size: int) -> list:
    """Each request of ``inputs`` answered with its own Documents, the answers in reverse order."""
    import orjson

    from jinad_fab.wire import Message

    msgs = []
    for batch in batches(inputs, size):
        header, body = run.request_parts(batch)
        msgs.append(Message.from_frames([orjson.dumps(header), *body]))
    for msg in reversed(msgs):
        run.answer(msg)
    return msgs


def test_a_calls_results_join_answers_held_as_columns_in_request_order_sharing_their_documents():
    import numpy as np

    from jinad_fab.client import _Run

    docs = DocumentArray.empty(7)
    docs.texts = [f"t{i}" for i in range(7)]
    docs.embeddings = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    run = _Run("/index", None, None, None, None, True)
    msgs = _answers_to(run, docs, 3)
    out = run.results
    assert out._columns() is not None  # joined as columns: no Document built for it
    assert out.ids == docs.ids and out.texts == docs.texts and np.array_equal(out.embeddings, docs.embeddings)
    assert out[4] is msgs[1].docs[1]  # the answer's Document and the result's are one object


def test_results_keep_what_a_callback_changed_in_an_answer():
    from jinad_fab.client import _Run

    docs = DocumentArray.empty(5)
    docs.texts = ["a", "b", "c", "d", "e"]

    def on_done(resp):
        if resp.docs.ids[0] == docs.ids[2]:
            resp.docs[0].text = "changed"  # builds that answer's Documents: they hold the truth

    run = _Run("/index", None, on_done, None, None, True)
    _answers_to(run, docs, 2)
    out = run.results
    assert out.ids == docs.ids and out.texts == ["a", "b", "changed", "d", "e"]

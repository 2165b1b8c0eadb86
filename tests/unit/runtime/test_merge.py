from jinad_fab import Document, DocumentArray
from jinad_fab.runtime.merge import merge_parts
from jinad_fab.runtime.pea import shard_of
from jinad_fab.wire import Message


def _msg(docs, **header):
    return Message({"rid": "r", "ep": "/search", **header}, docs=DocumentArray(docs))


def test_fan_in_unions_by_id_and_concatenates_matches():
    a = _msg([Document(id="q", matches=[Document(id="m1")], tags={"a": 1})])
    b = _msg([Document(id="q", matches=[Document(id="m2")], tags={"b": 2})])
    out = merge_parts([a, b]).docs
    assert out.ids == ["q"] and out[0].matches.ids == ["m1", "m2"] and out[0].tags == {"a": 1, "b": 2}


def test_shard_answers_are_reranked_and_cut_to_top_k():
    rank = {"score": "euclidean", "ascending": True, "top_k": 2}
    s0 = _msg([Document(id="q", matches=[Document(id="x", scores={"euclidean": 3.0}),
                                         Document(id="y", scores={"euclidean": 0.5})])], merge=rank)
    s1 = _msg([Document(id="q", matches=[Document(id="z", scores={"euclidean": 1.0})])], merge=rank)
    out = merge_parts([s0, s1]).docs[0]
    assert out.matches.ids == ["y", "z"]


def test_split_parts_come_back_in_the_original_order():
    p0 = _msg([Document(id="b"), Document(id="d")], pos=[1, 3])
    p1 = _msg([Document(id="a"), Document(id="c")], pos=[0, 2])
    out = merge_parts([p0, p1])
    assert out.docs.ids == ["a", "b", "c", "d"] and "pos" not in out.header


def test_an_error_in_any_part_wins():
    ok = _msg([Document(id="q")])
    bad = _msg([Document(id="q")], err={"pod": "idx", "type": "ValueError", "msg": "no"})
    assert merge_parts([ok, bad]).header["err"]["pod"] == "idx"


def test_shard_of_is_stable_and_spreads():
    ids = [f"doc-{i}" for i in range(3000)]
    counts = [0, 0, 0]
    for i in ids:
        counts[shard_of(i, 3)] += 1
    assert all(800 < c < 1200 for c in counts)
    assert shard_of("🐲", 2) == shard_of("🐲", 2)


def test_joins_follow_the_declared_needs_order_not_arrival():
    for left_first in (True, False):
        left = _msg([Document(id="q", tags={"who": "left"}, matches=[Document(id="l")])], src="left")
        right = _msg([Document(id="q", tags={"who": "right"}, matches=[Document(id="r")])], src="right")
        out = merge_parts([left, right] if left_first else [right, left], upstream=["left", "right"])
        assert out.docs[0].tags["who"] == "left" and out.docs[0].matches.ids == ["l", "r"]
        assert "src" not in out.header

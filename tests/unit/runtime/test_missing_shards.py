"""The Gateway's decisions about missing shards, without sockets (see jinad_fab.runtime.shards)."""

from jinad_fab import Document, DocumentArray
from jinad_fab.runtime.merge import merge_parts
from jinad_fab.runtime.pod import routing
from jinad_fab.runtime.shards import MissingShards, parts_expected, shard_of
from jinad_fab.wire import Message, new_header

READS = {"/search"}


def _missing(*shards: int, count: int = 2, polling=None) -> MissingShards:
    m = MissingShards()
    m.mark({f"idx/shard-{s}": {"pod": "idx", "shard": s, "shards": count, "polling": routing(polling),
                               "detail": "Pea idx/shard-1 exited with code -9"} for s in shards})
    return m


def _request(ep: str, ids: list[str], **header) -> tuple[dict, list]:
    msg = Message({**new_header("r", ep), **header}, docs=DocumentArray([Document(id=i) for i in ids]))
    return msg.header, msg.body_frames()


def _ids_on(shard: int, n: int = 3) -> list[str]:
    return [i for i in (f"d{k}" for k in range(100)) if shard_of(i, 2) == shard][:n]


def test_a_read_goes_without_the_missing_shard_and_names_it():
    header, body = _request("/search", _ids_on(1))
    assert _missing(1).check(header, body, READS) == (["idx/shard-1"], None)


def test_a_write_is_refused_only_when_one_of_its_documents_belongs_to_the_missing_shard():
    m = _missing(1)
    header, body = _request("/index", _ids_on(0) + _ids_on(1, 1))
    names, err = m.check(header, body, READS)
    assert names == [] and err["type"] == "PodDied" and err["pod"] == "idx" and err["shards"] == ["idx/shard-1"]
    assert "idx/shard-1" in err["msg"] and "exited with code -9" in err["msg"]
    header, body = _request("/delete", _ids_on(0))
    assert m.check(header, body, READS) == (["idx/shard-1"], None)


def test_a_write_every_shard_takes_and_a_dump_need_every_shard():
    m = _missing(1, polling={"/reset": "all"})
    header, body = _request("/reset", [])
    assert m.check(header, body, READS)[1]["shards"] == ["idx/shard-1"]
    header, body = _request("/dump", [], only="idx")
    assert m.check(header, body, READS | {"/dump"})[1]["shards"] == ["idx/shard-1"]


def test_a_pod_with_every_shard_missing_fails_every_request():
    header, body = _request("/search", ["q"])
    names, err = _missing(0, 1).check(header, body, READS)
    assert err["shards"] == ["idx/shard-0", "idx/shard-1"] and "every shard" in err["msg"]


def test_a_shard_back_is_no_longer_named():
    m = _missing(1)
    assert m.back(["idx/shard-1"], why="lost") == []  # it went missing for another reason
    assert m.back(["idx/shard-1"]) == ["idx/shard-1"] and not m
    header, body = _request("/index", _ids_on(1))
    assert m.check(header, body, READS) == ([], None)


def test_joins_downstream_of_the_pod_wait_for_one_part_fewer_per_missing_shard():
    header = {"missing_shards": ["idx/shard-1"]}
    assert parts_expected(2, ["idx"], header) == 1
    assert parts_expected(3, ["idx", "other"], header) == 2
    assert parts_expected(2, ["enc"], header) == 2  # a join that does not hear from the Pod
    assert parts_expected(2, ["idx"], {}) == 2


def test_a_split_request_missing_a_slice_merges_what_came_back_in_order():
    p0 = Message({"rid": "r", "ep": "/update", "pos": [0, 3]}, docs=DocumentArray([Document(id="a"), Document(id="d")]))
    p2 = Message({"rid": "r", "ep": "/update", "pos": [2]}, docs=DocumentArray([Document(id="c")]))
    out = merge_parts([p2, p0])
    assert out.docs.ids == ["a", "c", "d"] and "pos" not in out.header
    alone = merge_parts([Message({"rid": "r", "pos": [1]}, docs=DocumentArray([Document(id="b")]))])
    assert "pos" not in alone.header


def test_a_read_routed_by_id_hands_a_missing_shards_documents_to_the_first_shard_left():
    from jinad_fab.runtime.pea import _hand_over

    buckets = [[0, 3], [1, 4], [2]]
    _hand_over(buckets, [True, False, True])
    assert buckets == [[], [0, 1, 2, 3, 4], []]
    buckets = [[0], [1]]
    _hand_over(buckets, [True, True])  # none left (the Gateway fails such a request before)
    assert buckets == [[0], [1]]

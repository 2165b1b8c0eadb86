"""The Jina 1.x/2.x calling forms without a Flow: keyword parameters, refused spellings, content=, scores."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest

from jinad_fab import Client, Document, DocumentArray
from jinad_fab.client import endpoint_parameters, ids_to_documents
from jinad_fab.document import Score, Scores
from jinad_fab.errors import BadDocument, BadInput
from jinad_fab.feeders import from_lines
from jinad_fab.wire import Message, new_header


def test_keyword_arguments_become_parameters():
    assert endpoint_parameters(None, {}) is None
    assert endpoint_parameters({"a": 1}, {}) == {"a": 1}
    assert endpoint_parameters(None, {"top_k": 3}) == {"top_k": 3}
    given = {"limit": 2}
    assert endpoint_parameters(given, {"top_k": 3}) == {"limit": 2, "top_k": 3}
    assert given == {"limit": 2}  # the caller's dict is not changed
    assert endpoint_parameters({"top_k": 3}, {"top_k": 3}) == {"top_k": 3}  # the same value twice is fine


@pytest.mark.parametrize("key, new", [("input_fn", "inputs="), ("output_fn", "on_done="), ("callback", "on_done="),
                                      ("batch_size", "request_size="), ("continue_on_error", "on_error=")])
def test_jina_spellings_are_refused_naming_the_new_form(key, new):
    with pytest.raises(BadInput, match=f"`{key}=` is a Jina 1.x/2.x keyword; here write `{new}"):
        endpoint_parameters(None, {key: print})


def test_typos_and_functions_are_not_sent_as_parameters():
    with pytest.raises(BadInput, match="did you mean `request_size=`"):
        endpoint_parameters(None, {"request_szie": 10})
    with pytest.raises(BadInput, match="a callback goes in on_done=, on_error=, on_always="):
        endpoint_parameters(None, {"when_finished": print})
    with pytest.raises(BadInput, match="given twice"):
        endpoint_parameters({"top_k": 1}, {"top_k": 2})


def test_client_post_checks_the_keywords_before_connecting():
    c = Client(port=9)  # nothing is sent: the call is refused first
    with pytest.raises(BadInput, match="here write `on_done="):
        c.post("/index", [Document()], output_fn=print)
    c.close()


def test_delete_takes_ids_documents_or_a_mix():
    docs = ids_to_documents(["a", Document(id="b", text="keep")])
    assert [d.id for d in docs] == ["a", "b"] and docs[0].text is None and docs[1].text == "keep"
    assert [d.id for d in ids_to_documents("c")] == ["c"]
    da = DocumentArray([Document(id="x")])
    assert ids_to_documents(da) is da


def test_content_chooses_the_field_by_type():
    assert Document(content="hi").text == "hi"
    assert Document(content=b"\x00").buffer == b"\x00" and Document(content=bytearray(b"x")).buffer == b"x"
    blob = np.ones((2, 2))
    d = Document(content=blob)
    assert d.blob is blob and d.text is None and d.buffer is None and d.content is blob
    d.content = "now text"
    assert (d.text, d.blob, d.buffer) == ("now text", None, None)
    d.content = b"now bytes"
    assert (d.text, d.blob, d.buffer) == (None, None, b"now bytes")
    with pytest.raises(BadDocument, match="content must be str \\(text\\), bytes \\(buffer\\) or a numpy array"):
        Document(content=3)
    with pytest.raises(BadDocument, match="not both"):
        Document(content="a", text="b")
    assert Document.from_dict({"id": "j", "content": "from json"}).text == "from json"


def test_scores_are_floats_with_a_value():
    d = Document(scores={"euclidean": 1, "cosine": np.float32(0.5)})
    s = d.scores["euclidean"]
    assert isinstance(s, Score) and isinstance(s, float) and s == 1.0 and s.value == 1.0 and repr(s) == "1.0"
    assert d.scores.get("cosine").value == 0.5 and d.scores.get("nope") is None
    assert [v.value for v in d.scores.values()] == [1.0, 0.5]
    assert all(isinstance(v, Score) for _, v in d.scores.items())
    d.scores["l1"] = 2
    d.scores.update({"l2": 3}, dot=4)
    assert d.scores.setdefault("l1", 9).value == 2.0
    assert sorted(d.scores) == ["cosine", "dot", "euclidean", "l1", "l2"]
    assert d.scores.pop("dot").value == 4.0 and "dot" not in d.scores
    # stored as plain floats: JSON and orjson see the same numbers as before
    assert all(type(v) is float for v in dict.values(d.scores))
    assert orjson.loads(orjson.dumps(d.to_dict()))["scores"] == {"euclidean": 1.0, "cosine": 0.5, "l1": 2.0, "l2": 3.0}
    assert json.loads(json.dumps(d.to_dict()))["scores"]["l2"] == 3.0
    assert isinstance(d.scores.copy(), Scores)


def test_scores_from_the_wire_read_as_named_scores_and_encode_the_same():
    d = Document(id="q", matches=[Document(id="m", scores={"euclidean": 0.25})])
    frames = Message(new_header("r", "/search", {}), docs=DocumentArray([d])).frames()
    got = Message.from_frames(frames).docs[0].matches[0]
    assert got.scores["euclidean"].value == 0.25 and got.score.value == 0.25
    again = Message(new_header("r", "/search", {}), docs=DocumentArray([Document(id="q", matches=[got])])).frames()
    assert [bytes(f) for f in again[1:]] == [bytes(f) for f in frames[1:]]


def test_score_alone_is_the_jina_1_form_and_needs_one_score():
    with pytest.raises(AttributeError, match="m.scores\\['euclidean'\\].value"):
        _ = Document(scores={"a": 1, "b": 2}).score
    with pytest.raises(AttributeError, match="has 0 scores"):
        _ = Document().score


def test_from_lines(tmp_path):
    assert [d.text for d in from_lines(["a\n", "b"])] == ["a", "b"]
    p = tmp_path / "l.txt"
    p.write_text("x\r\ny\n")
    assert [d.text for d in from_lines(filepath=str(p))] == ["x", "y"]
    assert [d.text for d in from_lines(iter(["1", "2", "3"]), size=2)] == ["1", "2"]
    with pytest.raises(BadInput, match="index_csv"):
        list(from_lines(["a"], line_format="csv"))
    with pytest.raises(BadInput, match="one of them"):
        list(from_lines(["a"], filepath=str(p)))
    with pytest.raises(BadInput, match="must be str"):
        list(from_lines([1]))


@pytest.mark.parametrize("where, key, new", [("add", "port_jinad", "host='<host>:<port>'"),
                                            ("flow", "restful", "protocol='http'"),
                                            ("add", "uses_before", "a Pod of its own")])
def test_jina_flow_options_are_refused_naming_the_new_form(where, key, new):
    from jinad_fab import Flow
    from jinad_fab.errors import BadConfig

    with pytest.raises(BadConfig, match=re.escape(f"'{key}' (a Jina 1.x/2.x option; here write {new}")):
        if where == "add":
            Flow().add(uses="_pass", **{key: 8000})
        else:
            Flow(**{key: True})

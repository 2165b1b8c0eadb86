"""Feeders turn arrays, CSV, NDJSON and files into Documents lazily, without a Flow."""

import io
import types

import numpy as np
import pytest

from jinad_fab.errors import BadInput
from jinad_fab.feeders import from_csv, from_files, from_ndarray, from_ndjson


def test_ndarray_one_document_per_row():
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    docs = list(from_ndarray(arr))
    assert [d.embedding.tolist() for d in docs] == arr.tolist()
    assert [d.blob.tolist() for d in from_ndarray(arr, axis=1, field="blob")] == arr.T.tolist()
    assert len(list(from_ndarray(arr, size=2))) == 2
    shuffled = [d.embedding[0] for d in from_ndarray(arr, shuffle=True, seed=1)]
    assert sorted(shuffled) == [0, 3, 6, 9]
    assert isinstance(from_ndarray(arr), types.GeneratorType)
    with pytest.raises(BadInput):
        list(from_ndarray(np.array(["a", "b"])))


def test_csv_with_field_resolver(tmp_path):
    p = tmp_path / "pics.csv"
    p.write_text("id,pic_url,caption,score\n1,http://x/1.png,a cat,0.5\n2,http://x/2.png,a dog,0.7\n",
                 encoding="utf-8")
    docs = list(from_csv(str(p), field_resolver={"pic_url": "uri", "caption": "text"}))
    assert [(d.id, d.uri, d.text, d.tags) for d in docs] == [
        ("1", "http://x/1.png", "a cat", {"score": "0.5"}),
        ("2", "http://x/2.png", "a dog", {"score": "0.7"}),
    ]
    # a file object works too, and size limits the rows read
    assert [d.id for d in from_csv(io.StringIO(p.read_text()), size=1)] == ["1"]


def test_ndjson_with_field_resolver_and_embeddings(tmp_path):
    p = tmp_path / "qa.ndjson"
    p.write_text('{"question_id": "q1", "text": "why?", "embedding": [1, 2], "lang": "en"}\n\n'
                 '{"question_id": "q2", "text": "how?", "tags": {"x": 1}}\n', encoding="utf-8")
    docs = list(from_ndjson(str(p), field_resolver={"question_id": "id"}))
    assert [(d.id, d.text, d.tags) for d in docs] == [("q1", "why?", {"lang": "en"}), ("q2", "how?", {"x": 1})]
    assert docs[0].embedding.dtype == np.float32 and docs[0].embedding.tolist() == [1, 2]
    p.write_text('{"id": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(BadInput, match="NDJSON line 2"):
        list(from_ndjson(str(p)))


def test_files_by_mime_type(tmp_path):
    (tmp_path / "a.txt").write_text("plain text", encoding="utf-8")
    (tmp_path / "b.json").write_text('{"k": 1}', encoding="utf-8")
    (tmp_path / "c.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"\x89PNG")
    docs = {d.uri.rsplit("/", 1)[1]: d for d in from_files([str(tmp_path / "*.*"), str(tmp_path / "**/*.png")])}
    assert sorted(docs) == ["a.txt", "b.json", "c.mp4", "d.png"]
    assert (docs["a.txt"].mime_type, docs["a.txt"].text, docs["a.txt"].buffer) == ("text/plain", "plain text", None)
    assert docs["b.json"].text == '{"k": 1}'
    assert (docs["c.mp4"].mime_type, docs["c.mp4"].buffer, docs["c.mp4"].text) == (
        "video/mp4", b"\x00\x00\x00\x18ftypmp42", None)
    assert docs["d.png"].buffer == b"\x89PNG"
    only_uri = list(from_files(str(tmp_path / "*.txt"), read_mode=None))
    assert only_uri[0].text is None and only_uri[0].buffer is None
    assert list(from_files(str(tmp_path / "*.nothing"))) == []

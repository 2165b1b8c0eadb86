"""Flow.plot and Document.plot produce real SVG through Graphviz (needs `dot`, see .ci/setup.d)."""

import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from jinad_fab import Document, Flow

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    return [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.text]


def test_flow_plot_shows_gateway_pods_shards_and_needs(tmp_path):
    f = (Flow().add(name="encode", parallel=2)
         .add(name="index", uses="_index", shards=3)
         .add(name="side", needs="gateway")
         .needs(["index", "side"], name="join"))
    path = tmp_path / "flow.svg"
    svg = f.plot(str(path))
    assert path.read_text(encoding="utf-8") == svg
    words = texts(svg)
    for expected in ("gateway", "encode", "replica-0", "replica-1", "index", "uses: _index", "shards=3 parallel=1",
                     "head", "shard-0", "shard-1", "shard-2", "side", "join"):
        assert expected in words
    titles = [t.text for t in ET.fromstring(svg).iter(f"{SVG}title")]
    for edge in ("gateway->encode/replica-0", "encode/replica-1->index/head", "index/head->index/shard-2",
                 "index/shard-0->join", "gateway->side", "side->join", "join->gateway/out"):
        assert edge in titles


def test_document_plot_draws_nested_chunks_and_matches(tmp_path):
    doc = Document(id="root", text="a <query> & more", embedding=np.zeros(4, dtype=np.float32),
                   chunks=[Document(id="c1", text="chunk one", chunks=[Document(id="c1a", text="deeper")])],
                   matches=[Document(id="m1", scores={"euclidean": 0.25}, tags={"k": "v"})])
    svg = doc.plot(str(tmp_path / "doc.svg"))
    words = texts(svg)
    for expected in ("id: root", "text: 'a <query> & more'", "embedding: float32[4]", "id: c1", "id: c1a",
                     "id: m1", "tags.k: 'v'", "score euclidean: 0.25", "chunk", "match"):
        assert expected in words
    assert (tmp_path / "doc.svg").read_text(encoding="utf-8") == svg

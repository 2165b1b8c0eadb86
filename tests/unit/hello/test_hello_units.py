"""hello: the pure pieces (data split, PNG writer, metrics, encoders, placement, report, corpus)."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from jinad_fab import Document, DocumentArray
from jinad_fab.deploy.inventory import Inventory
from jinad_fab.errors import BadConfig
from jinad_fab.hello.chat import corpus_docs, load_corpus
from jinad_fab.hello.digits import load_digits, split
from jinad_fab.hello.encoders import ProjectionEncoder, TextModel, fit_projection, fit_tfidf
from jinad_fab.hello.evaluate import precision_recall, random_baseline
from jinad_fab.hello.placement import PodPlan, flow_add_args, plan
from jinad_fab.hello.png import digit_data_uri, png_bytes
from jinad_fab.hello.report import render_report


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[r * (w + 1):(r + 1) * (w + 1)] for r in range(h)]
    assert all(row[0] == 0 for row in rows)
    return np.array([list(row[1:]) for row in rows], dtype=np.uint8)


def test_png_round_trip():
    img = np.arange(8 * 5, dtype=np.uint8).reshape(5, 8) * 6
    assert np.array_equal(_decode_png(png_bytes(img)), img)
    assert digit_data_uri(np.zeros((8, 8))).startswith("data:image/png;base64,")


def test_digits_are_bundled_and_split_deterministically():
    d = load_digits()
    assert d.images.shape == (1797, 8, 8) and set(d.labels.tolist()) == set(range(10))
    a, b = split(1797, 200, seed=3), split(1797, 200, seed=3)
    assert np.array_equal(a.queries, b.queries) and np.array_equal(a.index, b.index)
    assert len(a.queries) == 200 and len(a.index) == 1597
    assert not set(a.queries.tolist()) & set(a.index.tolist())
    assert not np.array_equal(split(1797, 200, seed=4).queries, a.queries)


def test_precision_recall_and_baseline():
    index_labels = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    m = precision_recall(np.array([0, 1]), [[0, 0, 1], [1, 2, 2]], index_labels, k=3)
    assert m["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["recall@3"] == pytest.approx((2 / 3 + 1 / 4) / 2)
    assert m["precision@1"] == 1.0
    labels = np.repeat(np.arange(10), 100)
    base = random_baseline(labels[:300], labels, k=10, seed=0)
    assert 0.05 < base["precision@10"] < 0.15


def test_projection_encoder_embeds_blobs(tmp_path):
    d = load_digits()
    path = str(tmp_path / "p.npz")
    info = fit_projection(d.images[:500].reshape(500, -1), 16, path)
    assert info["dim"] == 16 and 0.5 < info["explained_variance"] <= 1.0
    enc = ProjectionEncoder(model=path)
    docs = DocumentArray(Document(blob=img) for img in d.images[:4])
    enc.encode(docs)
    assert docs.embeddings.shape == (4, 16)
    with pytest.raises(ValueError, match="no blob"):
        enc.encode(DocumentArray([Document(text="x")]))


def test_text_model_finds_paraphrases_and_knows_when_nothing_matches(tmp_path):
    from jinad_fab.hello.chat import MIN_SCORE
    from jinad_fab.hello.encoders import terms

    pairs = load_corpus()
    questions, answers = [p["question"] for p in pairs], [p["answer"] for p in pairs]
    info = fit_tfidf(questions, answers, 256, str(tmp_path / "m"))
    assert info["dim"] == len(pairs) and info["explained_variance"] == pytest.approx(1.0)
    model = TextModel(str(tmp_path / "m"))
    E = model.encode_items(questions, answers)
    assert np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-4)
    want = {"what's a pea": "What is a Pea?", "provisioning my servers": "How do I provision my hosts?",
            "how do I install the daemon on my gpu servers": "How do I provision my hosts?"}
    scores = model.encode(list(want)) @ E.T
    assert [questions[i] for i in scores.argmax(axis=1)] == list(want.values())
    assert (scores.max(axis=1) > 2 * MIN_SCORE).all()
    # words the FAQ never uses, or only stop words: every score is (about) zero, under the threshold
    none = model.encode(["rollback", "how do I cook dinner", "what is the weather", ""]) @ E.T
    assert np.abs(none).max() < MIN_SCORE
    # the normalisation: stems, the FAQ's own terms, stop words dropped, word pairs added
    assert terms("Installing the daemon on my servers") == ["provision", "jinad", "host", "provision jinad",
                                                            "jinad host"]
    assert terms("install jinad-fab") == ["install", "jinad-fab", "install jinad-fab"]


def test_corpus_is_a_few_hundred_distinct_pairs():
    pairs = load_corpus()
    assert len(pairs) >= 200
    assert len({p["id"] for p in pairs}) == len(pairs)
    assert len({p["question"].lower() for p in pairs}) == len(pairs)
    assert all(p["question"].strip() and p["answer"].strip() and p["topic"] for p in pairs)
    docs = corpus_docs(pairs[:3])
    assert docs[0].text == pairs[0]["question"] and docs[0].tags["answer"] == pairs[0]["answer"]


def _inventory(gpu: dict, cpu: dict, local: bool = False) -> Inventory:
    hostvars = {h: {"ansible_host": "127.0.0.1", "jinad_port": port} for h, port in {**gpu, **cpu}.items()}
    if local:
        for v in hostvars.values():
            v["ansible_connection"] = "local"
    return Inventory.from_ansible_json({
        "_meta": {"hostvars": hostvars},
        "all": {"children": ["gpu", "cpu"]},
        "gpu": {"hosts": list(gpu)},
        "cpu": {"hosts": list(cpu)},
    })


def test_placement_encoders_on_gpu_index_on_cpu():
    inv = _inventory({"g1": 1}, {"c1": 1, "c2": 2})
    hp = plan(inv, [PodPlan("encoder", ("gpu", "cpu"), parallel=2), PodPlan("index", ("cpu",), shards=2)])
    assert hp.host_of("encoder") == "g1" and hp.host_of("index") == "c1"
    assert not hp.notes
    assert flow_add_args(hp, "encoder", ["m.npz"]) == {"host": "127.0.0.1:1", "upload_files": ["m.npz"]}
    # the index's two shards were placed on c1 and c2: its Peas run on both, as `flow up` runs them
    assert hp.hosts_of("index") == ["c1", "c2"] and [h.name for h in hp.remote_hosts] == ["g1", "c1", "c2"]
    spread = flow_add_args(hp, "index")["spread"]
    assert [(p["host"], p["shard"]) for p in spread["parts"]] == [("127.0.0.1:1", 0), ("127.0.0.1:2", 1)]


def test_a_spread_pod_is_refused_when_its_daemons_tokens_differ():
    hostvars = {"g1": {"ansible_host": "127.0.0.1", "jinad_port": 1, "jinad_token": "tok-g"},
                "c1": {"ansible_host": "127.0.0.1", "jinad_port": 2, "jinad_token": "tok-c1"},
                "c2": {"ansible_host": "127.0.0.1", "jinad_port": 3, "jinad_token": "tok-c2"}}
    inv = Inventory.from_ansible_json({"_meta": {"hostvars": hostvars}, "all": {"children": ["gpu", "cpu"]},
                                       "gpu": {"hosts": ["g1"]}, "cpu": {"hosts": ["c1", "c2"]}})
    hp = plan(inv, [PodPlan("encoder", ("gpu", "cpu")), PodPlan("index", ("cpu",), shards=2)])
    assert flow_add_args(hp, "encoder")["token"] == "tok-g"  # a Pod on one host: that host's token
    with pytest.raises(BadConfig, match="different tokens"):  # never one host's token sent to another
        flow_add_args(hp, "index")


def test_placement_falls_back_and_says_so():
    inv = _inventory({}, {"c1": 1})
    hp = plan(inv, [PodPlan("encoder", ("gpu", "cpu")), PodPlan("index", ("cpu",))])
    assert hp.host_of("encoder") == "c1"
    assert any("'gpu' group is empty" in n for n in hp.notes)


def test_placement_on_this_machine_runs_locally():
    inv = Inventory.from_ansible_json({"_meta": {"hostvars": {"localhost": {"ansible_connection": "local"}}},
                                       "all": {"hosts": ["localhost"]}})
    hp = plan(inv, [PodPlan("encoder", ("gpu", "cpu")), PodPlan("index", ("cpu",))])
    assert hp.host_of("encoder") == "localhost" and hp.is_local("encoder") and hp.is_local("index")
    assert flow_add_args(hp, "encoder", ["m.npz"]) == {} and hp.remote_hosts == []
    assert len(hp.notes) == 2


def test_report_escapes_and_inlines():
    summary = {"top_k": 2, "queries": 1, "index_size": 3, "dim": 4, "shards": 1, "seed": 0,
               "metrics": {"precision@1": 1.0, "precision@2": 0.5, "recall@2": 0.25},
               "baseline": {"precision@1": 0.0, "precision@2": 0.0, "recall@2": 0.0},
               "timings": {"index": 0.1}, "pods": {"enc": {"uses": "<b>x</b>", "peas": 1, "host": "h"}},
               "notes": ["<script>alert(1)</script>"]}
    uri = digit_data_uri(np.zeros((8, 8)))
    rows = [{"id": "q", "label": 3, "uri": uri, "matches": [{"id": "a", "uri": uri, "score": 1.5, "hit": True},
                                                           {"id": "b", "uri": uri, "score": 2.5, "hit": False}]}]
    html = render_report(summary, rows, "<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "&lt;b&gt;x" in html
    assert html.count('class="match hit"') == 1 and html.count('class="match miss"') == 1
    assert 'src="data:image/svg+xml;base64,' in html


def test_cli_refuses_bad_input_without_traceback(tmp_path):
    from jinad_fab.cli.main import _register, cli

    _register()
    runner = CliRunner()
    r = runner.invoke(cli, ["hello", "images", "--top-k", "0", "--workdir", str(tmp_path)])
    assert r.exit_code == 1 and "--top-k" in r.output and "Traceback" not in r.output  # usage
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = runner.invoke(cli, ["hello", "images", "--workdir", str(blocker / "sub")])
    assert r.exit_code == 2, r.output
    assert "cannot write to the work directory" in r.output and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    r = runner.invoke(cli, ["hello", "images", "--json", "--top-k", "0"])
    assert r.exit_code == 1 and not r.output.lstrip().startswith("{")
    json.dumps(r.output)


def test_report_opens_with_a_summary_and_puts_misses_first():
    from jinad_fab.hello.evaluate import recall_ceiling
    from jinad_fab.hello.report import headline, order_rows

    index_labels = np.repeat(np.arange(10), 160)
    ceiling = recall_ceiling(np.array([0, 1]), index_labels, k=10)
    assert ceiling == pytest.approx(10 / 160)
    assert recall_ceiling(np.array([0]), np.array([0, 0, 1]), k=10) == 1.0  # fewer same-label items than k
    summary = {"top_k": 10, "queries": 200, "index_size": 1597, "recall_ceiling": ceiling, "queries_with_misses": 2,
               "metrics": {"precision@1": 0.985, "precision@10": 0.96, "recall@10": 0.06},
               "baseline": {"precision@1": 0.1, "precision@10": 0.1, "recall@10": 0.006}}
    text = " ".join(headline(summary))
    assert text.startswith("Searched 200 held-out handwritten digits against 1,597 indexed ones")
    assert "197 of 200 queries" in text and "of a possible 0.062" in text and "ceiling" in text
    assert "2 of 200 queries have at least one match with another label" in text

    def row(i, hits):
        return {"id": f"q{i}", "matches": [{"hit": h} for h in hits]}

    rows = [row(0, [True, True]), row(1, [True, False]), row(2, [False, True]), row(3, [True, True]),
            row(4, [True, False])]
    assert [r["id"] for r in order_rows(rows)] == ["q2", "q1", "q4", "q0", "q3"]

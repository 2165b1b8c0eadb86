"""`jinad-fab hello images` end to end: a real Flow, the metrics, the report in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import pytest

from tests.support.ports import free_port

from .conftest import artefact, cli, leftovers


def _run(args: list[str], timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def images_run(tmp_path_factory):
    """One run with Graphviz's `dot` hidden from PATH: the report must draw its Flow graph anyway."""
    workdir = tmp_path_factory.mktemp("hello-images")
    empty = tmp_path_factory.mktemp("no-dot-bin")
    env = {**os.environ, "PATH": str(empty)}
    t0 = time.perf_counter()
    r = _run(["hello", "images", "--json", "--workdir", str(workdir)], env=env)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    return workdir, json.loads(r.stdout), wall


@pytest.mark.timeout(240)
def test_default_settings_score_well_and_leave_nothing_running(images_run):
    workdir, summary, wall = images_run
    assert summary["metrics"]["precision@10"] >= 0.85
    assert summary["metrics"]["precision@10"] > 5 * summary["baseline"]["precision@10"]
    assert summary["queries"] == 200 and summary["index_size"] == 1597 and summary["top_k"] == 10
    assert summary["shards"] == 2 and summary["pods"]["index"]["peas"] == 2
    assert {"start Flow", "index", "search", "report"} <= set(summary["timings"])
    # ~160 digits per label and 10 matches: recall@10 cannot pass ~0.06, and the summary says how close it got
    assert 0.05 < summary["recall_ceiling"] < 0.07
    assert summary["metrics"]["recall@10"] <= summary["recall_ceiling"] + 1e-9
    assert (workdir / "hello-world.html").is_file()
    assert not leftovers(str(workdir))
    print(f"hello images: {wall:.1f} s wall, stages {summary['timings']}")


@pytest.mark.timeout(240)
def test_report_summary_first_misses_first_grid_and_graph_without_dot(images_run, browser, tmp_path):
    from selenium.webdriver.common.by import By

    workdir, summary, _ = images_run
    browser.get((workdir / "hello-world.html").as_uri())
    # the summary opens the page: what was searched, the precision, and why recall is low
    first = browser.execute_script("return document.body.querySelector('section, table, div').id")
    assert first == "summary"
    text = browser.find_element(By.ID, "summary").text
    assert "Searched 200 held-out handwritten digits against 1,597 indexed ones" in text
    assert f"precision@1 {summary['metrics']['precision@1']:.3f}" in text
    assert f"of a possible {summary['recall_ceiling']:.3f}" in text and "ceiling" in text

    cards = browser.find_elements(By.CSS_SELECTOR, "#results .query-row")
    assert len(cards) == summary["queries"]
    counts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#results .query-row'))"
        ".map(r => [r.querySelectorAll('figure.match img').length, r.querySelectorAll('figure.match.miss').length])")
    assert [c[0] for c in counts] == [summary["top_k"]] * summary["queries"]
    misses = [c[1] for c in counts]
    n_miss = summary["queries_with_misses"]
    assert n_miss == sum(1 for m in misses if m) and 0 < n_miss < summary["queries"]
    assert all(misses[:n_miss]) and not any(misses[n_miss:])  # every query with a miss comes first
    assert f"{n_miss} of 200 queries have at least one match with another label" in text
    loaded = browser.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert loaded
    hits = len(browser.find_elements(By.CSS_SELECTOR, "figure.match.hit"))
    assert hits / (summary["queries"] * summary["top_k"]) == pytest.approx(summary["metrics"]["precision@10"])
    assert browser.find_element(By.ID, "evaluation").text.count("random baseline") == 1

    # the Flow graph is drawn although `dot` was not on PATH (the built-in layout did it)
    graph = browser.find_element(By.ID, "flow-graph")
    assert graph.tag_name == "img" and graph.get_attribute("naturalWidth") not in (None, "0")
    html = (workdir / "hello-world.html").read_text(encoding="utf-8")
    svg = base64.b64decode(html.split('src="data:image/svg+xml;base64,', 1)[1].split('"', 1)[0]).decode()
    assert "built-in layered layout" in svg and "encoder" in svg and "shard-1" in svg

    # a grid, not one column: at 1200 px several cards share a row; at phone width one per row,
    # and the page never scrolls sideways
    def columns() -> int:
        return browser.execute_script(
            "const ys = Array.from(document.querySelectorAll('#results .query-row')).slice(0, 12)"
            ".map(c => c.getBoundingClientRect().top); return ys.filter(y => y === ys[0]).length")

    assert columns() >= 3
    height = browser.execute_script("return document.documentElement.scrollHeight")
    assert height < 200 * 60  # the old one-column page was ~13,000 px tall
    shot = artefact(tmp_path, "hello-images-report.png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    browser.set_window_size(500, 900)  # headless Chromium's narrowest window
    assert columns() == 1
    widths = browser.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    browser.save_screenshot(str(artefact(tmp_path, "hello-images-report-narrow.png")))
    print(f"report screenshots: {shot.parent}")


@pytest.mark.timeout(240)
def test_local_inventory_places_everything_here(tmp_path):
    pytest.importorskip("ansible")
    r = _run(["hello", "images", "--json", "--workdir", str(tmp_path / "w"), "--inventory", "local",
              "--shards", "1", "--parallel", "1", "--top-k", "5"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["placement"]["encoder"]["host"] == "localhost" and summary["placement"]["encoder"]["local"]
    assert summary["pods"]["index"]["host"] == "localhost"
    assert any("'gpu' group is empty" in n for n in summary["notes"])
    assert summary["metrics"]["precision@5"] >= 0.85
    # a first run shows its own progress, not the Peas' INFO lines (start-up, faiss loading, ...)
    assert not [line for line in r.stderr.splitlines() if " INFO " in line], r.stderr[-2000:]


@pytest.mark.timeout(120)
def test_unreachable_inventory_hosts_fail_clearly(tmp_path):
    pytest.importorskip("ansible")
    inv = tmp_path / "hosts.yml"
    # loopback addresses with ports nothing listens on: unreachable daemons, no traffic off this machine
    inv.write_text(
        "all:\n  children:\n"
        f"    gpu:\n      hosts:\n        gpu-a: {{ansible_host: 127.0.0.1, jinad_port: {free_port()}}}\n"
        f"    cpu:\n      hosts:\n        cpu-a: {{ansible_host: 127.0.0.1, jinad_port: {free_port()}}}\n")
    workdir = tmp_path / "w"
    r = _run(["hello", "images", "--workdir", str(workdir), "--inventory", str(inv)], timeout=90)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "unreachable" in r.stderr and "gpu-a" in r.stderr and "cpu-a" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not leftovers(str(workdir))


@pytest.mark.timeout(120)
def test_bad_options_exit_non_zero_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = ((["--top-k", "0"], "--top-k", 1), (["--workdir", str(blocker)], "--workdir", 1),  # usage
             (["--workdir", str(blocker / "sub")], "cannot write to the work directory", 2))  # failed
    for args, needle, code in cases:
        r = _run(["hello", "images", *args], timeout=60)
        assert r.returncode == code, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr


@pytest.mark.timeout(120)
def test_ctrl_c_while_the_flow_runs_stops_it(proc_group, tmp_path):
    import os
    import signal

    workdir = tmp_path / "w"
    proc = proc_group(cli("hello", "images", "--workdir", str(workdir), "--queries", "1000"))
    deadline = time.monotonic() + 60
    # the command and its first Pea: the Flow is starting, with every other Pea, the indexing and
    # the queries still ahead (waiting for more let a fast machine finish the demo before the signal)
    while time.monotonic() < deadline and len(leftovers(str(workdir))) < 2:
        time.sleep(0.05)
    # SIGINT to the command only: a terminal's Ctrl-C also reaches Peas still importing, whose
    # KeyboardInterrupt traceback is the runtime's to silence (reported); the chat test covers the group
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10  # as in the chat test: Peas still exiting may take a moment to go
    while leftovers(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftovers(str(workdir))

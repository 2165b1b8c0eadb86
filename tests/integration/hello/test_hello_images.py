"""`jinad-fab hello images` end to end: a real Flow, the metrics, the report in headless Chromium."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from .conftest import artefact, cli, free_port, leftovers


def _run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def images_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hello-images")
    t0 = time.perf_counter()
    r = _run(["hello", "images", "--json", "--workdir", str(workdir)])
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
    assert (workdir / "hello-world.html").is_file()
    assert not leftovers(str(workdir))
    print(f"hello images: {wall:.1f} s wall, stages {summary['timings']}")


@pytest.mark.timeout(240)
def test_report_shows_a_row_per_query_with_k_matches(images_run, browser, tmp_path):
    from selenium.webdriver.common.by import By

    workdir, summary, _ = images_run
    browser.get((workdir / "hello-world.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tr.query-row")
    assert len(rows) == summary["queries"]
    for row in rows[:50]:  # every row is checked below in one script; these by hand for the borders
        assert len(row.find_elements(By.CSS_SELECTOR, "figure.match")) == summary["top_k"]
    counts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#results tr.query-row'))"
        ".map(r => r.querySelectorAll('figure.match img').length)")
    assert counts == [summary["top_k"]] * summary["queries"]
    loaded = browser.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert loaded
    hits = len(browser.find_elements(By.CSS_SELECTOR, "figure.match.hit"))
    assert hits / (summary["queries"] * summary["top_k"]) == pytest.approx(summary["metrics"]["precision@10"])
    assert browser.find_element(By.ID, "evaluation").text.count("random baseline") == 1
    shot = artefact(tmp_path, "hello-images-report.png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


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
    cases = ((["--top-k", "0"], "--top-k"), (["--workdir", str(blocker)], "--workdir"),
             (["--workdir", str(blocker / "sub")], "cannot write to the work directory"))
    for args, needle in cases:
        r = _run(["hello", "images", *args], timeout=60)
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr


@pytest.mark.timeout(120)
def test_ctrl_c_while_the_flow_runs_stops_it(proc_group, tmp_path):
    import os
    import signal

    workdir = tmp_path / "w"
    proc = proc_group(cli("hello", "images", "--workdir", str(workdir), "--queries", "1000"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(leftovers(str(workdir))) < 3:  # the Peas are up
        time.sleep(0.1)
    # SIGINT to the command only: a terminal's Ctrl-C also reaches Peas still importing, whose
    # KeyboardInterrupt traceback is the runtime's to silence (reported); the chat test covers the group
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    time.sleep(0.5)
    assert not leftovers(str(workdir))

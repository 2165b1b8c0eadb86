"""`jinad-fab hello chat` end to end: the page in headless Chromium, held-out paraphrases, Ctrl-C."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import time

import pytest

from tests.support.ports import free_port

from .conftest import artefact, cli, leftovers

# Held out: none of these sentences is in the corpus; each paraphrases the question after it.
PARAPHRASES = {
    "How can I get jinad-fab installed?": "How do I install jinad-fab?",
    "what's a pea": "What is a Pea?",
    "my executor throws an error, what happens?": "What happens if my Executor raises an exception?",
    "run a pod on a machine with a gpu": "How do I place a Pod on GPU hosts?",
    "how can I view the logs of a pod": "How do I follow the logs of a Pod?",
    "provisioning my servers": "How do I provision my hosts?",
    # installing the daemon on hosts is what the FAQ calls provisioning (issue 18: ranked wrong before)
    "how do I install the daemon on my gpu servers": "How do I provision my hosts?",
}
# Nothing in the FAQ is about these: the page says so instead of showing unrelated answers.
NO_MATCH = ("rollback", "how do I cook dinner")


def _ready_line(proc: subprocess.Popen, timeout: float) -> dict:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hello chat exited with {proc.returncode}: {proc.stderr.read()}")
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.strip().startswith("{"):
                return json.loads(line)
    pytest.fail("hello chat did not become ready in time")


@pytest.mark.timeout(300)
def test_chat_page_answers_paraphrases_then_ctrl_c_stops_everything(proc_group, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    workdir = tmp_path / "chat"
    port = free_port()
    proc = proc_group(cli("hello", "chat", "--json", "--port", str(port), "--workdir", str(workdir)))
    info = _ready_line(proc, timeout=180)
    assert info["url"] == f"http://127.0.0.1:{port}/" and info["pairs"] >= 200

    browser.get(info["url"])
    box = browser.find_element(By.ID, "query")

    def ask(typed: str) -> list[list[str]]:
        box.clear()
        box.send_keys(typed, Keys.ENTER)
        WebDriverWait(browser, 30).until(
            lambda d: d.execute_script("return document.getElementById('answers').dataset.query") == typed)
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('#answers .answer')).map(a => ["
            "a.querySelector('.q').textContent, a.querySelector('.a').textContent,"
            "a.querySelector('.score').textContent, a.querySelectorAll('.a code').length])")

    for i, (typed, expected) in enumerate(PARAPHRASES.items()):
        shown = ask(typed)
        assert 1 <= len(shown) <= 3 and not browser.find_elements(By.ID, "no-match")
        assert shown[0][0] == expected, (typed, shown)
        assert shown[0][1] and "similarity" in shown[0][2]  # the answer itself and its score are shown
        scores = [float(s[2].split()[1]) for s in shown]
        assert scores == sorted(scores, reverse=True) and min(scores) >= info["min_score"]
        if i == 0:
            browser.save_screenshot(str(artefact(tmp_path, "hello-chat.png")))

    # `inline code` in an answer is drawn as <code>, its text intact (pip install 'jinad-fab[all]')
    shown = ask("How do I install jinad-fab?")
    assert shown[0][0] == "How do I install jinad-fab?" and shown[0][3] >= 1
    code = browser.execute_script("return document.querySelector('#answers .answer .a code').textContent")
    assert code.startswith("pip install") and "`" not in shown[0][1]

    for typed in NO_MATCH:
        shown = ask(typed)
        notice = browser.find_elements(By.ID, "no-match")
        assert not shown and len(notice) == 1, (typed, shown)
        assert "No good match" in notice[0].text and typed in notice[0].text
    browser.save_screenshot(str(artefact(tmp_path, "hello-chat-no-match.png")))

    # Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and "stopped" in err
    deadline = time.monotonic() + 10
    while leftovers(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(str(workdir))
    with socket.socket() as s:  # nobody listens on the port any more (TIME_WAIT leftovers aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


@pytest.mark.timeout(120)
def test_port_taken_is_a_clear_error(proc_group, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = proc_group(cli("hello", "chat", "--port", str(port), "--workdir", str(tmp_path / "w")))
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    assert f"port {port}" in err and "already in use" in err and "Traceback" not in err
    assert not leftovers(str(tmp_path / "w"))

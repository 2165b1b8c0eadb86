"""A default `jinad` against a real browser: a page on another loopback origin cannot use it."""

from __future__ import annotations

import http.server
import threading
import time

import httpx
import pytest

from tests.support.daemons import FLOW_YML
from tests.support.ports import free_port

ATTACK_PAGE = """<!doctype html><html><head><title>start</title></head><body>
<form id="f" method="POST" enctype="multipart/form-data" action="{daemon}/workspaces" target="sink">
  <input type="file" name="files" id="inp" multiple></form>
<iframe name="sink" id="sink"></iframe>
<script>
const D = "{daemon}";
const flow = {flow};
function parts() {{
  const fd = new FormData();
  fd.append("files", new Blob([flow]), "flow.yml");
  fd.append("files", new Blob(["./pkg\\n"]), "requirements.txt");
  return fd;
}}
async function attack() {{
  // a "simple" request: no preflight, the browser sends it and only hides the answer
  try {{ await fetch(D + "/workspaces", {{method: "POST", body: parts(), mode: "no-cors"}}); }} catch (e) {{}}
  let cors = "sent";
  try {{ const r = await fetch(D + "/workspaces", {{method: "POST", body: parts()}}); cors = "read " + r.status; }}
  catch (e) {{ cors = "blocked"; }}
  document.body.dataset.cors = cors;
  const dt = new DataTransfer();
  dt.items.add(new File([flow], "flow.yml"));
  document.getElementById("inp").files = dt.files;
  document.getElementById("sink").onload = () => {{ document.title = "done"; }};
  document.getElementById("f").submit();
}}
attack();
</script></body></html>"""


@pytest.fixture
def daemon(daemon_factory, tmp_path):
    return daemon_factory(home=tmp_path / "home")


@pytest.fixture
def attack_site(daemon):
    """An ordinary web server on another loopback port (another origin) serving the attack page."""
    page = ATTACK_PAGE.format(daemon=daemon.url, flow=repr(FLOW_YML)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _wait_title(browser, title: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while browser.title != title:
        assert time.monotonic() < deadline, f"page title stayed {browser.title!r}"
        time.sleep(0.1)


def test_a_page_on_another_origin_creates_nothing(browser, daemon, attack_site):
    browser.get(attack_site)
    _wait_title(browser, "done")
    assert browser.find_element("tag name", "body").get_attribute("data-cors") == "blocked"
    time.sleep(1)  # a build would start right after the upload: give one the chance to show
    with daemon.client() as c:
        assert c.get("/workspaces").json()["items"] == []
    ws_dir = daemon.home / "workspaces"
    assert not ws_dir.exists() or list(ws_dir.iterdir()) == []


def test_a_rebound_name_gets_403_in_the_browser(browser_factory, daemon):
    """Chromium resolves an attacker's name to 127.0.0.1 (as DNS rebinding would): the daemon refuses."""
    driver = browser_factory("--host-resolver-rules=MAP rebind.test 127.0.0.1")
    driver.get(f"http://rebind.test:{daemon.port}/workspaces?token={daemon.token}")
    assert "Host header" in driver.find_element("tag name", "body").text
    assert httpx.get(daemon.url + "/alive").status_code == 200


@pytest.mark.parametrize("page, marker", [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id]")])
def test_the_api_pages_work_offline(browser_factory, daemon, page, marker):
    """Swagger UI and ReDoc come from the daemon itself: every other name fails to resolve."""
    driver = browser_factory("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    assert httpx.get(daemon.url + page).status_code == 401  # the page needs the token too
    driver.get(f"{daemon.url}{page}?token={daemon.token}")
    deadline = time.monotonic() + 30
    texts: list[str] = []
    while time.monotonic() < deadline:
        texts = [e.text for e in driver.find_elements("css selector", marker)]
        if any("workspaces" in t.lower() for t in texts):
            break
        time.sleep(0.2)
    assert any("workspaces" in t.lower() for t in texts), driver.page_source[:2000]
    remote = [e for e in driver.get_log("browser") if "ERR_NAME_NOT_RESOLVED" in e.get("message", "")]
    assert remote == []  # nothing was fetched from another host

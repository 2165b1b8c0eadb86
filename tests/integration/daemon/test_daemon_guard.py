"""Who may talk to a default `jinad`: a token always, no foreign Host (DNS rebinding), no foreign
Origin (CSRF), no token in argv. Each test is the attack, against a real daemon on loopback."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys

import httpx
import pytest

from tests.support.daemons import FLOW_YML, REPO_PARENT, Daemon, running
from tests.support.ports import free_port

EVIL_ORIGIN = "http://evil.example"


@pytest.fixture(scope="module")
def jinad(tmp_path_factory):
    """One default daemon for this module's attacks: each must be refused and create nothing, and
    checks so (a test that makes something, test_state_is_private, starts its own). A start per
    test cost ~1.5 s of CPU each."""
    with running(Daemon(tmp_path_factory.mktemp("guard") / "jinad")) as d:
        yield d


def _multipart_attack(url: str, **headers: str) -> httpx.Response:
    """What a web page can send without a preflight: a multipart POST with no Authorization."""
    files = [("files", ("flow.yml", FLOW_YML.encode())), ("files", ("requirements.txt", b"./pkg\n"))]
    return httpx.post(url + "/workspaces", files=files, headers=headers, timeout=30)


def _nothing_created(d) -> None:
    with d.client() as c:
        assert c.get("/workspaces").json()["items"] == []
    ws_dir = d.home / "workspaces"
    assert not ws_dir.exists() or list(ws_dir.iterdir()) == []


def test_a_cross_origin_post_creates_nothing(jinad):
    r = _multipart_attack(jinad.url, origin=EVIL_ORIGIN)
    assert r.status_code in (401, 403), r.text
    # even a page that somehow had the token is refused for its Origin, and the 403 names the header
    r = _multipart_attack(jinad.url, origin=EVIL_ORIGIN, authorization=f"Bearer {jinad.token}")
    assert r.status_code == 403 and "Origin" in r.json()["detail"], r.text
    _nothing_created(jinad)


def test_a_rebound_host_name_is_refused(jinad):
    """DNS rebinding: the page's own name now resolves to 127.0.0.1; the browser sends it as Host."""
    for path in ("/alive", "/workspaces"):
        r = httpx.get(jinad.url + path, headers={"host": f"rebind.evil.example:{jinad.port}"})
        assert r.status_code == 403 and "Host" in r.json()["detail"], r.text
    r = _multipart_attack(jinad.url, host="rebind.evil.example", authorization=f"Bearer {jinad.token}")
    assert r.status_code == 403 and "Host" in r.json()["detail"]
    _nothing_created(jinad)


def test_every_route_but_alive_needs_the_token(jinad):
    assert httpx.get(jinad.url + "/alive").status_code == 200
    for method, path in [("GET", "/"), ("GET", "/status"), ("GET", "/workspaces"), ("GET", "/flows"),
                         ("GET", "/pods"), ("GET", "/peas"), ("GET", "/logs/jflow-0000"), ("GET", "/docs"),
                         ("GET", "/openapi.json"), ("GET", "/no-such-route"), ("DELETE", "/workspaces/x")]:
        r = httpx.request(method, jinad.url + path)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer"
        wrong = httpx.request(method, jinad.url + path, headers={"authorization": "Bearer not-it"})
        assert wrong.status_code == 403, (path, wrong.status_code)
    with jinad.client() as c:
        assert c.get("/workspaces").status_code == 200
        spec = c.get("/openapi.json").json()
    # and every route the daemon documents, so a route added later (a Flow's peers, a deployment's
    # lock) is tried by a neighbour without the token too
    tried = 0
    for path, methods in spec["paths"].items():
        for method in methods:
            if path == "/alive":
                continue
            url = jinad.url + re.sub(r"\{[^}]+\}", "x", path)
            r = httpx.request(method.upper(), url, json={})
            assert r.status_code == 401, (method, path, r.status_code)
            tried += 1
    assert tried >= 30, tried


def test_the_token_is_written_once_privately_and_survives_a_restart(daemon_factory, tmp_path):
    d = daemon_factory(home=tmp_path / "h")
    token_file = d.home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.home.stat().st_mode) == 0o700
    first = token_file.read_text().strip()
    assert len(first) >= 32 and d.token == first
    d.stop()
    d.start()
    assert token_file.read_text().strip() == first
    with d.client() as c:
        assert c.get("/workspaces").status_code == 200


def test_local_hosts_and_allowed_names_pass(daemon_factory):
    d = daemon_factory(extra=["--allowed-host", "jinad.internal", "--allowed-origin", "http://ui.internal:3000"])
    auth = {"authorization": f"Bearer {d.token}"}
    for host in ("127.0.0.1", "localhost", f"localhost:{d.port}", "jinad.internal", "JINAD.internal:80"):
        assert httpx.get(d.url + "/workspaces", headers={**auth, "host": host}).status_code == 200, host
    ok = httpx.get(d.url + "/workspaces", headers={**auth, "origin": "http://ui.internal:3000"})
    assert ok.status_code == 200
    same = httpx.get(d.url + "/workspaces", headers={**auth, "origin": f"http://127.0.0.1:{d.port}"})
    assert same.status_code == 200  # the daemon's own /docs page
    for origin in ("http://ui.internal:3001", "null", f"http://127.0.0.1:{d.port + 1}", "https://ui.internal:3000"):
        r = httpx.get(d.url + "/workspaces", headers={**auth, "origin": origin})
        assert r.status_code == 403 and "Origin" in r.json()["detail"], origin


def test_ipv6_loopback_host_header(daemon_factory):
    d = daemon_factory()
    r = httpx.get(d.url + "/workspaces", headers={"authorization": f"Bearer {d.token}", "host": f"[::1]:{d.port}"})
    assert r.status_code == 200


def test_a_browser_cookie_opens_pages_but_never_posts(jinad):
    r = httpx.get(jinad.url + "/openapi.json", params={"token": jinad.token})
    assert r.status_code == 200
    cookie = r.cookies.get("jinad-token")
    assert cookie == jinad.token and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    assert httpx.get(jinad.url + "/workspaces", cookies={"jinad-token": cookie}).status_code == 200
    r = _multipart_attack(jinad.url, cookie=f"jinad-token={cookie}")
    assert r.status_code == 401
    assert httpx.post(jinad.url + "/flows", params={"token": jinad.token, "workspace_id": "x"}).status_code == 401
    _nothing_created(jinad)


def _jinad(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONPATH=REPO_PARENT)
    return subprocess.run([sys.executable, "-m", "jinad_fab.cli.daemon", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_token_in_argv_is_refused(tmp_path):
    r = _jinad("--home", str(tmp_path / "h"), "--port", "0", "--token", "visible-in-ps")
    assert r.returncode == 1 and "--token-file" in r.stderr  # a usage error
    assert not (tmp_path / "h").exists()


def test_a_token_file_others_can_read_is_refused(tmp_path):
    tf = tmp_path / "token"
    tf.write_text("s3cret\n")
    tf.chmod(0o644)
    r = _jinad("--home", str(tmp_path / "h"), "--port", "0", "--token-file", str(tf))
    assert r.returncode == 1 and "chmod 600" in r.stderr and "s3cret" not in r.stderr


def test_token_file_and_env(daemon_factory, tmp_path):
    d = daemon_factory(token="from-a-file")  # the kit hands it over with --token-file
    assert "from-a-file" not in " ".join(d.proc.args)
    with d.client() as c:
        assert c.get("/workspaces").status_code == 200
    assert not (d.home / "token").exists()
    env_home = tmp_path / "env-home"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.daemon", "--port", str(port), "--home",
                             str(env_home), "--log-level", "warning"],
                            env=dict(os.environ, PYTHONPATH=REPO_PARENT, JINAD_TOKEN="from-the-env"))
    try:
        _wait_alive(port)
        ok = httpx.get(f"http://127.0.0.1:{port}/workspaces", headers={"authorization": "Bearer from-the-env"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)


def _wait_alive(port: int, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/alive", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(port)


def test_a_taken_port_fails_before_startup_complete(jinad, tmp_path):
    """A second daemon on the same port (and the same home) must neither start nor recover anything."""
    r = _jinad("--port", str(jinad.port), "--home", str(jinad.home), "--log-level", "info")
    out = r.stdout + r.stderr
    assert r.returncode == 2 and f"port {jinad.port}" in out and "already in use" in out
    assert "startup complete" not in out.lower() and "recovered" not in out
    assert httpx.get(jinad.url + "/alive").status_code == 200  # the first one is untouched


def test_a_local_cli_finds_the_token_in_the_default_home(jinad, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD_")}
    env.update(PYTHONPATH=REPO_PARENT, JINAD_HOME=str(jinad.home))
    cmd = [sys.executable, "-m", "jinad_fab.cli.main", "flow", "ls", "--host", f"127.0.0.1:{jinad.port}", "--json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    env["JINAD_HOME"] = str(tmp_path / "elsewhere")  # no token there: refused, and the CLI says so
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "missing bearer token" in r.stderr + r.stdout


def test_the_default_home_token_never_goes_to_another_host(tmp_path, monkeypatch):
    from jinad_fab.tokens import find_token

    home = tmp_path / "home"
    home.mkdir()
    (home / "token").write_text("local-only\n")
    monkeypatch.delenv("JINAD_TOKEN", raising=False)
    monkeypatch.delenv("JINAD_TOKEN_FILE", raising=False)
    monkeypatch.setenv("JINAD_HOME", str(home))
    assert find_token("127.0.0.1") == find_token("localhost") == find_token("::1") == "local-only"
    assert find_token("gpu1.example") is None and find_token("10.0.0.5") is None


def test_a_request_without_host_is_refused(jinad):
    with socket.create_connection(("127.0.0.1", jinad.port)) as s:
        s.sendall(b"GET /alive HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 403")


def test_state_is_private(daemon_factory):
    """The database holds Pods' env values and the logs what objects print: owner-only."""
    from tests.support.daemons import active_workspace

    jinad = daemon_factory()

    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW_YML})
        r = c.post("/pods", params={"workspace_id": wid}, json={"uses": "_pass", "env": {"API_KEY": "s3cret"}})
        assert r.status_code == 201, r.text
        assert c.delete(f"/pods/{r.json()['id']}").status_code == 200
    assert stat.S_IMODE(jinad.home.stat().st_mode) == 0o700
    db = list(jinad.home.glob("jinad.db*"))
    logs = [p for p in jinad.home.rglob("*.log") if "/files/" not in str(p) and "/env/" not in str(p)]
    assert db and logs
    for path in db + logs:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

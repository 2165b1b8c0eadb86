"""`jinad-fab flow|pod|ping` against real daemons, through Click's CliRunner."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli

pytestmark = pytest.mark.timeout(180)
_register()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_flow_create_ls_logs_delete(daemons, tmp_path, monkeypatch):
    h = daemons(token="tok-123")
    host = f"127.0.0.1:{h.port}"
    (tmp_path / "flow.yml").write_text("!Flow\nversion: 1\nwith:\n  protocol: http\npods:\n"
                                       "  - name: enc\n    uses: conf/enc.yml\n  - name: log\n    uses: _logforward\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "enc.yml").write_text("jtype: Upper\npy_modules: [upper.py]\n")
    (tmp_path / "conf" / "upper.py").write_text(
        "from jinad_fab import Executor, requests\n\nclass Upper(Executor):\n    @requests\n"
        "    def up(self, docs):\n        for d in docs:\n            d.text = d.text.upper()\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["flow", "create", "flow.yml", "--host", host, "--token-file", str(h.token_file),
                                      "--json"])
    code, out = result.exit_code, result.stdout
    assert code == 0, result.output
    body = json.loads(out)  # progress (upload size, the build log) goes to stderr, the result alone to stdout
    assert "uploading 4 file(s)" in result.stderr and f"building workspace {body['workspace_id']}" in result.stderr
    assert body["state"] == "RUNNING" and "tok-123" not in out
    r = httpx.post(f"http://127.0.0.1:{body['gateway']['http_port']}/index", json={"data": [{"text": "abc"}]})
    assert r.json()["data"][0]["text"] == "ABC"

    code, out = run("flow", "ls", "--host", host, "--token-file", str(h.token_file), "--json")
    assert code == 0 and [f["id"] for f in json.loads(out)] == [body["id"]]
    code, out = run("flow", "ls", "--host", host, "--token-file", str(h.token_file))
    assert code == 0 and body["id"] in out and body["workspace_id"] in out  # whole ids, ready to copy
    code, out = run("flow", "logs", body["id"], "--host", host, "--token-file", str(h.token_file))
    assert code == 0 and "/index request" in out
    code, out = run("flow", "logs", body["id"], "--host", host, "--token-file", str(h.token_file), "--json",
                    "-n", "3")
    entries = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(entries) == 3 and all("msg" in e or "message" in e for e in entries)
    code, out = run("flow", "delete", body["id"], "--host", host, "--token-file", str(h.token_file), "--json")
    assert code == 0 and json.loads(out) == {"id": body["id"], "stopped": True,
                                             "workspace_id": body["workspace_id"], "workspace_removed": True}
    with h.client() as c:
        assert c.get("/workspaces").json()["items"] == []
        assert c.get(f"/flows/{body['id']}").status_code == 404  # gone with its workspace


def test_flow_create_with_a_wrong_token_names_the_host(daemons, tmp_path, monkeypatch):
    h = daemons(token="right")
    (tmp_path / "flow.yml").write_text("!Flow\nversion: 1\npods:\n  - name: a\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrong.token").write_text("wrong\n")
    result = CliRunner().invoke(cli, ["flow", "create", "flow.yml", "--host", f"127.0.0.1:{h.port}",
                                      "--token-file", str(tmp_path / "wrong.token")])
    assert result.exit_code != 0 and f"127.0.0.1:{h.port}" in result.output and "wrong token" in result.output


def test_pod_detached_then_visible_on_the_host(daemons, tmp_path, monkeypatch):
    h = daemons()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["pod", "--uses", "_logforward", "--host", f"127.0.0.1:{h.port}",
                                      "--parallel", "2", "--detach"], catch_exceptions=False)
    out = result.stdout
    assert result.exit_code == 0, result.output
    pod_id = re.search(r"(jpod-[0-9a-f]+) RUNNING", out).group(1)
    ws_id = re.search(r"\(workspace (jworkspace-[0-9a-f]+)\)", out).group(1)
    # the workspace's build log was streamed to stderr before the Pod started, as `flow create` does
    assert f"building workspace {ws_id}" in result.stderr and "  build | " in result.stderr
    assert out.count("tcp://") == 3  # two replicas' inputs + control
    with h.client() as c:
        assert c.get(f"/pods/{pod_id}").json()["state"] == "RUNNING"
        c.delete(f"/pods/{pod_id}")


def test_pod_takes_every_spec_option_and_the_daemon_receives_them(daemons, tmp_path, monkeypatch):
    h = daemons()
    monkeypatch.chdir(tmp_path)
    code, out = run("pod", "--host", f"127.0.0.1:{h.port}", "--name", "opts", "--uses", "_pass", "--replicas", "2",
                    "--shards", "2", "--polling", "any", "--uses-with", "{}", "--env", "{MARK: here}",
                    "--timeout-ready", "45", "--detach")
    assert code == 0, out
    pod_id = re.search(r"(jpod-[0-9a-f]+) RUNNING", out).group(1)
    with h.client() as c:
        args = c.get(f"/pods/{pod_id}").json()["args"]
        c.delete(f"/pods/{pod_id}")
    assert (args["parallel"], args["shards"], args["polling"]) == (2, 2, "any")
    assert args["env"] == {"MARK": "here"} and args["timeout_ready"] == 45.0 and args["uses_with"] == {}


def test_pod_refuses_a_bad_option_value_before_contacting_the_host():
    result = CliRunner().invoke(cli, ["pod", "--host", "127.0.0.1:1", "--polling", "some"])
    assert result.exit_code == 1 and "polling='some'" in result.output and "'any'" in result.output
    result = CliRunner().invoke(cli, ["pod", "--host", "127.0.0.1:1", "--paralel", "2"])
    assert result.exit_code != 0 and "Did you mean '--parallel'" in result.output


def test_ping(daemons):
    h = daemons()
    code, out = run("ping", f"127.0.0.1:{h.port}", "-c", "3", "--interval", "0")
    assert code == 0 and out.count("ping ") == 3 and "round trip avg" in out


def test_ping_unreachable_exits_4():
    from tests.support.ports import free_port

    result = CliRunner().invoke(cli, ["ping", f"127.0.0.1:{free_port()}", "-c", "2", "--interval", "0"])
    assert result.exit_code == 4 and "unreachable" in result.output


def _token_file(tmp_path, token: str):
    path = tmp_path / f"{token}.token"
    path.write_text(token + "\n")
    return str(path)


def test_exit_codes_are_the_same_in_every_command(daemons, tmp_path):
    """0 fine, 1 usage, 2 failed, 4 unreachable: `flow ls` and `ping` agree on a closed port."""
    from tests.support.ports import free_port

    h = daemons(token="t")
    closed = free_port()
    for args in (["flow", "ls", "--host", f"127.0.0.1:{closed}"], ["ping", f"127.0.0.1:{closed}", "-c", "1"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 4, (args, result.output)
        assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["flow", "ls", "--host", f"127.0.0.1:{closed}"])
    assert f"is jinad running on 127.0.0.1? start it with `jinad --port {closed}`" in result.output
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "jinad_fab.cli.main", "flow", "ls", "--host", f"127.0.0.1:{closed}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4 and "is jinad running on 127.0.0.1?" in proc.stderr  # the real entry point too

    for args in (["flow", "ls", "--host", "127.0.0.1:70000"], ["ping", "127.0.0.1:70000"],
                 ["flow", "ls", "--host", "ftp://127.0.0.1"], ["flow", "ls"], ["--no-such-option"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)  # usage: nothing was tried
    result = CliRunner().invoke(cli, ["flow", "ls", "--host", "127.0.0.1:70000"])
    assert "port 70000 is out of range 1-65535" in result.output and "Connection refused" not in result.output

    code, out = run("flow", "ls", "--host", f"http://127.0.0.1:{h.port}", "--token-file", str(h.token_file), "--json")
    assert code == 0 and json.loads(out) == []  # a URL is a host too: no ':8000' appended to it
    result = CliRunner().invoke(cli, ["flow", "ls", "--host", f"127.0.0.1:{h.port}", "--token-file",
                                      _token_file(tmp_path, "wrong")])
    assert result.exit_code == 2 and "wrong token" in result.output
    result = CliRunner().invoke(cli, ["flow", "delete", "jflow-" + "0" * 32, "--host", f"127.0.0.1:{h.port}",
                                      "--token-file", str(h.token_file)])
    assert result.exit_code == 2 and "no flow with id" in result.output and '"detail"' not in result.output


def test_a_local_daemons_token_file_is_used_when_no_token_is_given(daemons, tmp_path, monkeypatch):
    """The CLI's token source: --token-file / JINAD_TOKEN first, else <JINAD_HOME>/token for a loopback host."""
    h = daemons(token="from-the-file")
    home = tmp_path / "jinad-home"
    home.mkdir()
    (home / "token").write_text("from-the-file\n")
    monkeypatch.delenv("JINAD_TOKEN", raising=False)
    monkeypatch.setenv("JINAD_HOME", str(home))
    code, out = run("flow", "ls", "--host", f"127.0.0.1:{h.port}", "--json")
    assert code == 0 and json.loads(out) == []
    result = CliRunner().invoke(cli, ["flow", "ls", "--host", f"127.0.0.1:{h.port}", "--token-file",
                                      _token_file(tmp_path, "other")])
    assert result.exit_code == 2 and "wrong token" in result.output  # an explicit token wins
    monkeypatch.setenv("JINAD_HOME", str(tmp_path / "nowhere"))
    result = CliRunner().invoke(cli, ["flow", "ls", "--host", f"127.0.0.1:{h.port}"])
    assert result.exit_code == 2 and "missing bearer token" in result.output
    result = CliRunner().invoke(cli, ["flow", "ls", "--host", f"127.0.0.1:{h.port}", "--token", "from-the-file"])
    assert result.exit_code != 0 and "--token-file" in result.output  # never a token in argv


def test_a_flow_that_cannot_start_shows_the_daemons_message_and_log_tail(daemons, tmp_path, monkeypatch):
    h = daemons()
    (tmp_path / "flow.yml").write_text("!Flow\nversion: 1\npods:\n  - name: a\n    uses: NoSuchExecutor\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["flow", "create", "flow.yml", "--host", f"127.0.0.1:{h.port}"])
    assert result.exit_code == 2, result.output
    first, _, tail = result.output.partition("--- last log lines ---")
    assert f"127.0.0.1:{h.port}: jflow-" in first and "failed to start" in first and "NoSuchExecutor" in first
    assert tail.strip() and "NoSuchExecutor" in tail and '{"' not in result.output and "Traceback" not in result.output
    with h.client() as c:
        assert c.get("/workspaces").json()["items"] == []  # the workspace made for it is gone again

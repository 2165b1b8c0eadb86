"""Uploads report their bytes as they go: the client's callback against a real daemon, and the
bar `jinad-fab flow create` draws on a terminal (and leaves out of a pipe)."""

from __future__ import annotations

import os
import re
import sys

import httpx
import pytest
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.remote import DaemonClient, Workspace
from jinad_fab.remote.client import _parts
from tests.support.terminal import run_with_terminal_stderr

pytestmark = pytest.mark.timeout(300)
_register()

FLOW = "!Flow\nversion: 1\npods:\n  - name: p\n    uses: _pass\n"


def _payload(tmp_path) -> dict[str, bytes]:
    big = os.urandom(3 * 1024 * 1024 + 12345)
    (tmp_path / "flow.yml").write_text(FLOW)
    (tmp_path / "model.bin").write_bytes(big)
    return {"flow.yml": FLOW.encode(), "model.bin": big}


def _body_size(files: dict[str, bytes]) -> int:
    """The multipart body's length, as httpx encodes it (the boundary's length is fixed)."""
    return int(httpx.Request("POST", "http://h/workspaces", files=_parts(files)).headers["Content-Length"])


def test_the_callback_follows_every_byte_of_the_body_the_daemon_receives(daemons, tmp_path) -> None:
    h = daemons()
    files = _payload(tmp_path)
    seen: list[tuple[int, int]] = []
    with DaemonClient(h.address, h.token) as client:
        ws = Workspace.create(client, files, on_progress=lambda sent, total: seen.append((sent, total)))
        try:
            assert ws.wait_active().state == "ACTIVE"
        finally:
            ws.delete()
    total = _body_size(files)
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert {t for _, t in seen} == {total}
    sent = [s for s, _ in seen]
    assert sent == sorted(sent) and len(sent) > total // (64 * 1024)  # live: chunk by chunk, not at the end
    assert total > sum(len(v) for v in files.values())  # the whole body, headers of the parts included


def test_flow_create_draws_a_byte_bar_on_a_terminal_and_none_in_a_pipe(daemons, tmp_path, monkeypatch) -> None:
    h = daemons()
    files = _payload(tmp_path)
    mib = _body_size(files) / 1024 ** 2
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    code, out, shown = run_with_terminal_stderr(
        [sys.executable, "-m", "jinad_fab.cli.main", "flow", "create", "flow.yml", "--host", h.address,
         "--token-file", str(h.token_file), "--upload", "model.bin", "--json"], env=env, cwd=tmp_path)
    assert code == 0, shown[-3000:]
    with DaemonClient(h.address, h.token) as client:
        for flow in client.flows():
            client.delete_flow(flow["id"])
        for ws in client.workspaces():
            client.delete_workspace(ws["id"])
    bars = re.findall(r"uploading to \S+.*?(\d+\.\d)/(\d+\.\d) MiB", shown)
    assert bars, shown[-3000:]
    assert bars[-1] == (f"{mib:.1f}", f"{mib:.1f}")  # it ended at the body's size, all of it sent

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["flow", "create", "flow.yml", "--host", h.address, "--token-file",
                                      str(h.token_file), "--upload", "model.bin", "--json"])
    assert result.exit_code == 0, result.output
    assert re.search(r"uploading \d+ file\(s\), 3\.0 MiB", result.stderr)  # one line, and no bar:
    assert "/3.0 MiB" not in result.stderr and "━" not in result.stderr

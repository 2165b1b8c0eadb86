"""`--host` / `--ca-file` / the token source shared by the commands that talk to one daemon."""

from __future__ import annotations

import click
from click.testing import CliRunner

from jinad_fab.cli.commands._daemon import daemon, host_options, local_token
from jinad_fab.remote import DaemonAddress


def test_a_local_token_is_never_sent_to_another_machine(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("t0k\n")
    monkeypatch.setenv("JINAD_HOME", str(tmp_path))
    for host in ("127.0.0.1:8000", "localhost", "::1", "https://127.0.0.2:8443"):
        assert local_token(DaemonAddress.parse(host)) == "t0k", host
    for host in ("10.0.0.5", "gpu1:8000", "example.org"):
        assert local_token(DaemonAddress.parse(host)) is None, host
    monkeypatch.setenv("JINAD_HOME", str(tmp_path / "missing"))
    assert local_token(DaemonAddress.parse("127.0.0.1")) is None


def test_host_options_parse_the_address_and_keep_the_ca_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not used: no connection is made\n")
    seen = {}

    @click.command()
    @host_options
    def cmd(host: DaemonAddress, token: str | None) -> None:
        seen["host"] = host
        seen["ca_file"] = click.get_current_context().meta.get("jinad_fab.ca_file")

    result = CliRunner().invoke(cmd, ["--host", "https://[::1]:8443", "--ca-file", str(ca)])
    assert result.exit_code == 0, result.output
    assert seen == {"host": DaemonAddress("https", "::1", 8443), "ca_file": str(ca)}
    result = CliRunner().invoke(cmd, ["--host", "gpu1:123456"])
    assert result.exit_code == 2 and "port 123456 is out of range" in result.output  # Click alone; jinad-fab: 1
    assert CliRunner().invoke(cmd, ["--host", "gpu1", "--ca-file", str(tmp_path / "nope")]).exit_code == 2


def test_daemon_builds_the_client_from_the_address():
    with daemon(DaemonAddress.parse("http://127.0.0.1:8123"), "t") as c:
        assert c.base_url == "http://127.0.0.1:8123" and c.name == "127.0.0.1:8123"

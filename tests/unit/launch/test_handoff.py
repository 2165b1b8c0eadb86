"""The sealed handoff of other daemons' tokens from jinad to a Flow process (no sockets)."""

from __future__ import annotations

import pytest

from jinad_fab.launch import handoff
from jinad_fab.remote import DaemonAddress


def test_sealed_half_and_key_alone_do_not_hold_the_token(tmp_path) -> None:
    tokens = {"gpu1:8000": "s3cret-token-value", "[::1]:9000": "another-one"}
    key, sealed = handoff.seal(tokens)
    assert b"s3cret" not in sealed and "s3cret" not in key
    assert handoff.unseal(key, sealed) == tokens
    _, other = handoff.seal(tokens)
    assert other != sealed  # a fresh pad every time: equal inputs never look alike


def test_take_reads_once_deletes_the_file_and_drops_the_key(tmp_path) -> None:
    status = tmp_path / "jflow-x.json"
    key, sealed = handoff.seal({"h:1": "tok"})
    path = handoff.sealed_path(status)
    handoff.write_sealed(path, sealed)
    assert path.stat().st_mode & 0o077 == 0
    env = {handoff.KEY_ENV: key, "OTHER": "1"}
    assert handoff.take(str(status), env) == {"h:1": "tok"}
    assert not path.exists() and env == {"OTHER": "1"}
    assert handoff.take(str(status), env) == {}  # nothing handed over: nothing to read


def test_a_key_for_another_file_is_refused(tmp_path) -> None:
    key, _ = handoff.seal({"h:1": "tok"})
    _, sealed = handoff.seal({"h:1": "a longer token value"})
    with pytest.raises(ValueError):
        handoff.unseal(key, sealed)


@pytest.mark.parametrize("address", ["gpu1", "gpu1:8000", "http://gpu1:8000", "https://GPU1:8443/",
                                     "10.0.0.5:9000", "::1", "[::1]:8001"])
def test_peer_key_is_the_clients_netloc(address) -> None:
    assert handoff.peer_key(address) == DaemonAddress.parse(address).netloc


def test_hosts_named_lists_the_pods_daemons() -> None:
    flow = {"pods": [{"name": "a", "host": "gpu1:8000", "fallback_hosts": ["gpu2:8000"]}, {"name": "b"},
                     {"name": "c", "host": " "}]}
    assert handoff.hosts_named(flow) == ["gpu1:8000", "gpu2:8000"]
    assert handoff.hosts_named({"executors": {"x": {"host": "h:1"}}}) == ["h:1"]
    assert handoff.hosts_named("not a mapping") == []
    spread = {"pods": [{"name": "s", "host": "h:1", "spread": {"parts": [{"host": "h:1"}, {"host": "h:2"}],
                                                               "hosts": [{"host": "h:3"}, "junk"]}}]}
    assert handoff.hosts_named(spread) == ["h:1", "h:1", "h:2", "h:3"]  # a spread Pod's every daemon

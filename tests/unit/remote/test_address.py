"""`DaemonAddress.parse` is the one URL builder: schemes, default port, IPv6, and usage errors; a
client's token comes from its source, which is asked again when the daemon refuses it."""

from __future__ import annotations

import httpx
import pytest

from jinad_fab.errors import EXIT_USAGE, BadAddress, Forbidden
from jinad_fab.remote import DaemonAddress, DaemonClient
from jinad_fab.tokens import TokenFileError


@pytest.mark.parametrize(("text", "url"), [
    ("gpu1", "http://gpu1:8000"),
    ("gpu1:8001", "http://gpu1:8001"),
    ("http://gpu1:8001", "http://gpu1:8001"),  # a scheme is not a host name: no ':8000' appended to it
    ("http://gpu1:8001/", "http://gpu1:8001"),
    ("https://gpu1:8443", "https://gpu1:8443"),
    ("https://gpu1", "https://gpu1:8000"),  # jinad's port, with or without TLS
    ("HTTPS://GPU1:8443", "https://gpu1:8443"),
    (" 10.0.0.5:9000 ", "http://10.0.0.5:9000"),
    ("[::1]:8001", "http://[::1]:8001"),
    ("::1", "http://[::1]:8000"),  # a bare IPv6 literal: every colon is the address's
    ("fe80::1:2", "http://[fe80::1:2]:8000"),
    ("https://[2001:db8::5]:8443", "https://[2001:db8::5]:8443"),
    ("localhost:65535", "http://localhost:65535"),
])
def test_parse(text, url):
    assert DaemonAddress.parse(text).url == url


def test_default_port_fills_in_only_a_missing_port():
    assert DaemonAddress.parse("gpu1", default_port=9100).port == 9100
    assert DaemonAddress.parse("gpu1:8001", default_port=9100).port == 8001
    assert DaemonAddress.parse("::1", default_port=9100) == DaemonAddress("http", "::1", 9100)


def test_labels_name_the_host_as_users_write_it():
    assert DaemonAddress.parse("gpu1").label == "gpu1:8000"
    assert DaemonAddress.parse("::1").label == "[::1]:8000"
    assert DaemonAddress.parse("https://gpu1:8443").label == "https://gpu1:8443"
    assert str(DaemonAddress.parse("gpu1:1")) == "gpu1:1"


@pytest.mark.parametrize(("text", "reason"), [
    ("gpu1:70000", "port 70000 is out of range 1-65535"),
    ("http://gpu1:99999", "port 99999 is out of range 1-65535"),
    ("gpu1:0", "port 0 is out of range 1-65535"),
    ("gpu1:http", "port 'http' is not a number"),
    ("[::1]:123456", "port 123456 is out of range 1-65535"),
    ("ftp://gpu1:21", "scheme 'ftp' is not one of http, https"),
    ("http://gpu1:8000/api", "no path"),
    ("http://user:pw@gpu1:8000", "credentials"),
    ("http://:8000", "no host name"),
    ("[gpu1]:8000", "IPv6"),
    ("[::1", "Invalid IPv6 URL"),
    ("", "expected HOST[:PORT]"),
])
def test_bad_addresses_are_usage_errors(text, reason):
    with pytest.raises(BadAddress) as info:
        DaemonAddress.parse(text)
    assert reason in str(info.value) and info.value.address == text
    assert info.value.exit_code == EXIT_USAGE and isinstance(info.value, ValueError)


def test_from_address_builds_the_url_and_checks_before_connecting(tmp_path):
    with DaemonClient.from_address("https://[::1]:8443") as c:
        assert c.base_url == "https://[::1]:8443" and c.name == "https://[::1]:8443"
    with pytest.raises(BadAddress):
        DaemonClient.from_address("gpu1:123456")
    with pytest.raises(BadAddress, match="CA bundle"):
        DaemonClient.from_address("https://gpu1", ca_file=str(tmp_path / "missing.pem"))


def test_a_token_source_is_asked_with_the_address_and_never_shown():
    asked = []

    def source(address: DaemonAddress) -> str:
        asked.append(address)
        return "s3cret"

    seen: list[str | None] = []
    with DaemonClient("127.0.0.1:8123", source, transport=_answering(seen)) as c:
        c.status()
        assert seen == ["Bearer s3cret"] and "s3cret" not in repr(c)
    assert asked == [DaemonAddress("http", "127.0.0.1", 8123)]
    with DaemonClient("127.0.0.1:8123", lambda a: None, transport=_answering(seen)) as c:
        c.status()
        assert seen[-1] is None


def _answering(seen: list, accept: list[str] | None = None) -> httpx.MockTransport:
    """Records each request's Authorization header; refuses all but ``accept[0]`` (when given) with
    the daemon's answers (401 without a token, 403 with a wrong one)."""

    def handle(request: httpx.Request) -> httpx.Response:
        sent = request.headers.get("Authorization")
        seen.append(sent)
        if accept is None or sent == f"Bearer {accept[0]}":
            return httpx.Response(200, json={"items": []})
        return httpx.Response(401 if sent is None else 403, json={"detail": "wrong token"})

    return httpx.MockTransport(handle)


def test_a_refused_token_is_read_again_from_its_source_once():
    """After `provision rotate-token` rewrote the token file, a client made before asks its source
    again and sends the request once more; a source with nothing new, or a token given as a string,
    gets the refusal."""
    current, accepted = ["old"], ["new"]
    seen: list[str | None] = []
    with DaemonClient("127.0.0.1:8123", lambda a: current[0], transport=_answering(seen, accepted)) as c:
        current[0] = "new"
        assert c.workspaces() == []
        assert seen == ["Bearer old", "Bearer new"]
        assert c.workspaces() == [] and seen[2:] == ["Bearer new"]  # kept: not read again on success
        current[0], accepted[0] = "newer", "newest"
        with pytest.raises(Forbidden):  # read again, still refused: no third try
            c.workspaces()
        assert seen[3:] == ["Bearer new", "Bearer newer"]
    seen.clear()
    with DaemonClient("127.0.0.1:8123", lambda a: "same", transport=_answering(seen, ["new"])) as c:
        with pytest.raises(Forbidden):
            c.workspaces()
        assert seen == ["Bearer same"]  # nothing new in the file: not sent again
    seen.clear()
    with DaemonClient("127.0.0.1:8123", "given", transport=_answering(seen, ["new"])) as c:
        with pytest.raises(Forbidden):
            c.workspaces()
        assert seen == ["Bearer given"]
    seen.clear()

    def gone(address: DaemonAddress) -> str:
        if seen:
            raise TokenFileError("token file 'x' does not exist")
        return "old"

    with DaemonClient("127.0.0.1:8123", gone, transport=_answering(seen, ["new"])) as c:
        with pytest.raises(Forbidden):
            c.workspaces()
        assert seen == ["Bearer old"]
    seen.clear()
    with DaemonClient("127.0.0.1:8123", lambda a: None if not seen else "new",
                      transport=_answering(seen, ["new"])) as c:
        assert c.workspaces() == [] and seen == [None, "Bearer new"]  # no token at first (401), one in the file now

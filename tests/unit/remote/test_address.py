"""`DaemonAddress.parse` is the one URL builder: schemes, default port, IPv6, and usage errors."""

from __future__ import annotations

import pytest

from jinad_fab.errors import EXIT_USAGE, BadAddress
from jinad_fab.remote import DaemonAddress, DaemonClient


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

    with DaemonClient.from_address("127.0.0.1:8123", source) as c:
        assert c._http.headers["Authorization"] == "Bearer s3cret" and "s3cret" not in repr(c)
    assert asked == [DaemonAddress("http", "127.0.0.1", 8123)]
    with DaemonClient.from_address("127.0.0.1:8123", lambda a: None) as c:
        assert "Authorization" not in c._http.headers

"""Where a daemon is: ``gpu1``, ``gpu1:8000``, ``https://gpu1:8443``, ``[::1]:8000``, ``http://h:p``.

:meth:`DaemonAddress.parse` is the one place a host as a user writes it becomes a URL. A port out
of range, an unknown scheme or a path is refused with :class:`~jinad_fab.errors.BadAddress`
(a usage error), before any connection is tried.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse

from ..errors import BadAddress

DEFAULT_PORT = 8000
"""The port ``jinad`` listens on unless told otherwise (with or without TLS)."""

SCHEMES = ("http", "https")


@dataclasses.dataclass(frozen=True)
class DaemonAddress:
    scheme: str
    host: str
    """A name or an IP address; an IPv6 literal without brackets."""
    port: int

    @classmethod
    def parse(cls, address: str, default_port: int | None = None, *, tls: bool | None = None) -> DaemonAddress:
        """``[scheme://]host[:port][/]``; the port defaults to ``default_port``, else 8000.

        The scheme is the one written; with none, ``https`` when ``tls`` is true, else ``http``. A
        written scheme that contradicts ``tls`` (``http://`` with ``tls=True``) is refused."""
        if not isinstance(address, str) or not address.strip():
            raise BadAddress(address, "expected HOST[:PORT] or http(s)://HOST[:PORT]")
        text = address.strip()
        if "://" not in text:
            if text.count(":") > 1 and not text.startswith("["):
                text = f"[{text}]"  # a bare IPv6 literal: every colon belongs to the address
            text = ("https://" if tls else "http://") + text
        try:
            parts = urllib.parse.urlsplit(text)
        except ValueError as exc:  # "Invalid IPv6 URL"
            raise BadAddress(address, str(exc)) from exc
        try:
            port = parts.port
        except ValueError as exc:  # "Port out of range 0-65535", "Port could not be cast to integer"
            raise BadAddress(address, _port_reason(parts.netloc)) from exc
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise BadAddress(address, f"scheme {parts.scheme!r} is not one of {', '.join(SCHEMES)}")
        if tls is not None and (scheme == "https") != bool(tls):
            raise BadAddress(address, f"{scheme}:// contradicts tls={bool(tls)}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise BadAddress(address, "a daemon address has no path, query or fragment")
        if parts.username is not None or parts.password is not None:
            raise BadAddress(address, "credentials do not belong in the address (pass a token)")
        host = parts.hostname
        if not host:
            raise BadAddress(address, "no host name")
        if port is None:
            port = DEFAULT_PORT if default_port is None else default_port
        if not 1 <= int(port) <= 65535:
            raise BadAddress(address, f"port {port} is out of range 1-65535")
        if "[" in parts.netloc:
            try:
                ipaddress.IPv6Address(host.split("%", 1)[0])
            except ValueError as exc:
                raise BadAddress(address, f"{host!r} in brackets is not an IPv6 address") from exc
        return cls(scheme, host, int(port))

    @property
    def netloc(self) -> str:
        """``host:port``, the host in brackets when it is an IPv6 literal."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def label(self) -> str:
        """How messages name the daemon: ``gpu1:8000``, or the URL when it is HTTPS."""
        return self.netloc if self.scheme == "http" else self.url

    def __str__(self) -> str:
        return self.label


def _port_reason(netloc: str) -> str:
    port = netloc.rpartition("]")[2] if netloc.startswith("[") else netloc
    port = port.rpartition(":")[2] if ":" in port else ""
    if port.isdigit():
        return f"port {port} is out of range 1-65535"
    return f"port {port!r} is not a number"

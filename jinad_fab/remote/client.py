"""`DaemonClient`: the raw layer, one method per route of one host's `jinad` REST API (v1).

Bodies come back as the daemon's JSON (plain dicts), so the same client serves the CLI, deploy
fan-outs and remote Pods; :mod:`.objects` wraps them in handles. Every foreign error is
translated in exactly one place, :func:`_translate`, into the
:class:`~jinad_fab.errors.DaemonError` family; callers read ``status_code``, ``host``,
``object_id`` and ``log_tail`` rather than parsing messages.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import httpx

from ..errors import (
    BadAddress,
    Busy,
    Conflict,
    DaemonError,
    DaemonUnreachable,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    StartFailed,
    Unauthorized,
    Unprocessable,
)
from ..tokens import is_loopback_name
from .address import DaemonAddress

UploadProgress = Callable[[int, int], None]
"""``on_progress(sent, total)``: bytes of an upload's request body sent so far, and its size."""

DEFAULT_TIMEOUT = 10.0

TokenSource = Callable[[DaemonAddress], "str | None"]
"""Finds the token for an address when none is given: the CLI passes one that reads
``JINAD_TOKEN`` or the token file a local daemon wrote (the environment is read only at the edge)."""

_STATUS_ERRORS: dict[int, type[DaemonError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    503: Busy,
}


def error_for_response(response: httpx.Response, host: str | None = None) -> DaemonError:
    """The error a non-success answer stands for: the daemon's message, and the object and log tail
    it names when it names one."""
    object_id, log_tail = None, None
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):  # not JSON (a proxy's page): its first line says enough
        lines = response.text.strip().splitlines()
        detail = lines[0][:200] if lines else ""
    if isinstance(detail, dict):  # {"message", "id", "log_tail"}: an object that failed
        object_id, log_tail = detail.get("id"), detail.get("log_tail")
        detail = str(detail.get("message") or "")
    elif isinstance(detail, list):  # FastAPI's validation errors: where, and what is wrong there
        detail = "; ".join(
            ".".join(str(p) for p in e.get("loc", ())) + f": {e.get('msg', e)}" if isinstance(e, dict) else str(e)
            for e in detail)
    cls = _STATUS_ERRORS.get(response.status_code, DaemonError)
    if cls is Invalid and object_id is not None:
        cls = StartFailed
    message = str(detail) or f"{response.request.method} {response.request.url.path} answered " \
                             f"{response.status_code} {response.reason_phrase}"
    err = cls(message, host=host, object_id=object_id, log_tail=log_tail)
    err.status_code = response.status_code
    return err


def _unreachable(exc: httpx.HTTPError, address: DaemonAddress) -> DaemonUnreachable:
    """Say why a host cannot be reached and what to do about it, from the error's causes' types."""
    causes = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    host = address.host
    refused = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
    if refused is not None:
        why = _untrusted(refused, address)
    elif any(isinstance(c, ssl.SSLError) for c in causes):
        why = (f"the TLS handshake failed: does the daemon on {host} serve "
               f"{'HTTPS' if address.scheme == 'https' else 'plain HTTP'}?")
    elif any(isinstance(c, socket.gaierror) for c in causes):
        why = f"the name {host!r} does not resolve"
    elif isinstance(exc, httpx.TimeoutException):
        why = f"no answer in time ({type(exc).__name__})"
    elif isinstance(exc, httpx.ConnectError):
        start = f"jinad --port {address.port}" if is_loopback_name(host) else f"jinad --host 0.0.0.0 --port {address.port}"
        why = (f"connection refused: is jinad running on {host}? start it with `{start}` there, "
               f"or install it with `jinad-fab provision deploy`")
    else:
        why = f"{type(exc).__name__}: {exc}"
    return DaemonUnreachable(f"cannot reach jinad at {address.url}: {why}", host=address.label)


# OpenSSL's X509_V_ERR_* codes (x509_vfy.h): why a certificate chain was not accepted
_EXPIRED, _NOT_YET_VALID, _HOSTNAME_MISMATCH, _IP_MISMATCH = 10, 9, 62, 64
_NO_TRUSTED_ISSUER = {2, 18, 19, 20, 21, 27}


def _untrusted(exc: ssl.SSLCertVerificationError, address: DaemonAddress) -> str:
    """Why the daemon's certificate was refused, from OpenSSL's verify code, and what fixes it."""
    code = getattr(exc, "verify_code", None)
    renew = "issue it again (`jinad-fab provision deploy -i INV` renews fleet certificates)"
    if code == _EXPIRED:
        return f"its TLS certificate has expired: {renew}, or check the clocks of both machines"
    if code == _NOT_YET_VALID:
        return "its TLS certificate is not valid yet: check the clocks of both machines"
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        return (f"its TLS certificate does not name {address.host!r}: use the address the certificate was "
                f"issued for, or set jinad_address in the inventory and {renew}")
    if code in _NO_TRUSTED_ISSUER:
        return ("its TLS certificate is not trusted (not signed by the CA this client checks with): pass the "
                "CA bundle that signed it (--ca-file, jinad_ca_file in the inventory, ca_file= on a Flow; a "
                "fleet's own CA is credentials/tls/ca.pem next to its inventory)")
    reason = getattr(exc, "verify_message", None) or exc.reason or "refused"
    return f"its TLS certificate is not trusted ({reason}): pass the CA bundle that signed it (--ca-file, jinad_ca_file)"


@contextlib.contextmanager
def _translate(address: DaemonAddress, label: str) -> Iterator[None]:
    """Map httpx's transport errors and bad statuses onto the DaemonError tree, in one place."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        raise error_for_response(exc.response, label) from exc
    except httpx.DecodingError as exc:
        raise DaemonError(f"unreadable answer: {exc}", host=label) from exc
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        err = _unreachable(exc, address)
        err.host = label
        raise err from exc


def _bundle_key(ca_file: str | None) -> tuple[str | None, int]:
    """The bundle and its modification time: a rewritten bundle gets a new context."""
    if ca_file is None:
        return None, 0
    return str(ca_file), os.stat(ca_file).st_mtime_ns


_TLS_LOCK = threading.Lock()


def _tls_context(ca_file: str | None, _mtime_ns: int = 0) -> ssl.SSLContext:
    """One verifying context per CA bundle (None: httpx's default, certifi's CAs), shared by every
    client of the process: building one reads the whole bundle, which a fan-out to a hundred
    daemons would otherwise do a hundred times. Contexts are safe to share between threads; the
    lock keeps a fan-out's first threads from each building the same one at once (lru_cache alone
    lets every caller that misses compute it)."""
    with _TLS_LOCK:
        return _build_tls_context(ca_file, _mtime_ns)


@functools.lru_cache(maxsize=32)
def _build_tls_context(ca_file: str | None, _mtime_ns: int = 0) -> ssl.SSLContext:
    if ca_file is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context(cafile=ca_file)


@functools.lru_cache(maxsize=1)
def _trust_nothing() -> ssl.SSLContext:
    """For an ``http://`` daemon: a context that verifies and trusts no CA, so it could never
    accept a certificate, yet costs nothing to build (httpx builds certifi's otherwise)."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class _Bearer(httpx.Auth):
    """The bearer token on every request. A token that came from a source (a token file, an
    inventory: a :data:`TokenSource`) is asked for again once after a 401 or 403, and the request
    sent again when it changed: a process that started Pods before ``provision rotate-token`` (which
    rewrites the file) can still stop them. The daemon refuses a request with a wrong token before
    it acts on it, so sending it again never does anything twice."""

    def __init__(self, address: DaemonAddress, token: str | TokenSource | None):
        self._address = address
        self._source = token if callable(token) else None
        self._token = token(address) if callable(token) else token
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        sent = self._token
        if sent:
            request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code not in (401, 403) or self._source is None:
            return
        fresh = self._read_again(sent)
        if fresh and fresh != sent:
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request

    def _read_again(self, sent: str | None) -> str | None:
        with self._lock:  # threads refused at once read the file once
            if self._token != sent:  # another request read it meanwhile
                return self._token
            try:
                fresh = self._source(self._address)  # type: ignore[misc]
            except (OSError, ValueError):  # gone or unreadable now: answer with the refusal
                return None
            if fresh:
                self._token = fresh
            return fresh


class DaemonClient:
    """One daemon. Use as a context manager (or call :meth:`close`) so connections are released.

    ``address`` as :meth:`DaemonAddress.parse` reads it: ``gpu1``, ``gpu1:8000``,
    ``https://gpu1:8443``, ``[::1]:8000``. ``token`` is sent as a Bearer token; a callable is asked
    for the token of this address (how the CLI finds a local daemon's token file), and asked again
    once when the daemon refuses it (a rotated token). ``ca_file``: a CA bundle to check an HTTPS
    daemon's certificate with (default: the system's).
    """

    def __init__(
        self,
        address: str | DaemonAddress,
        token: str | TokenSource | None = None,
        *,
        ca_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | None = None,
        default_port: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        if not isinstance(address, DaemonAddress):
            address = DaemonAddress.parse(address, default_port)
        self.address = address
        self.base_url = address.url
        self.name = name or address.label
        auth = _Bearer(address, token)
        if address.scheme == "https":
            try:
                verify = _tls_context(*_bundle_key(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise BadAddress(address.url, f"cannot use CA bundle {str(ca_file)!r}: {exc}") from exc
        else:  # plain HTTP never uses a context: do not read a CA bundle (~25 ms of a short CLI command)
            verify = _trust_nothing()
        self._http = httpx.Client(base_url=self.base_url, auth=auth, timeout=timeout, transport=transport,
                                  verify=verify)

    @classmethod
    def from_address(
        cls,
        address: str | DaemonAddress,
        token: str | TokenSource | None = None,
        *,
        ca_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        default_port: int | None = None,
        name: str | None = None,
    ) -> DaemonClient:
        """The client for ``gpu1:8000`` | ``https://gpu1:8443`` | ``http://h:p`` (port 8000 when left out).

        A malformed address (unknown scheme, port out of range) raises
        :class:`~jinad_fab.errors.BadAddress` here, before any connection is tried.
        """
        return cls(address, token, ca_file=ca_file, timeout=timeout, default_port=default_port, name=name)

    def __repr__(self) -> str:  # never shows the token
        return f"DaemonClient({self.base_url!r})"

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        with _translate(self.address, self.name):
            response = self._http.request(method, path, **kwargs)
            response.raise_for_status()
            if not response.content:
                return None
            return response.json()

    def _upload(self, method: str, path: str, files: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
                on_progress: UploadProgress | None) -> Any:
        """A multipart upload; ``on_progress(sent, total)`` follows the request body's bytes."""
        if on_progress is None:
            return self._request(method, path, files=_parts(files))
        with _translate(self.address, self.name):
            request = self._http.build_request(method, path, files=_parts(files))
            request.stream = _CountingStream(request.stream, int(request.headers["Content-Length"]), on_progress)
            response = self._http.send(request)
            response.raise_for_status()
            return response.json() if response.content else None

    # ---- health --------------------------------------------------------------------------------

    def alive(self) -> dict[str, Any]:
        """``GET /alive``: version, daemon id, uptime, runtimes, GPUs."""
        return self._request("GET", "/alive")

    def status(self) -> dict[str, Any]:
        """``GET /status``: host resources and object counts by state."""
        return self._request("GET", "/status")

    # ---- token rotation ------------------------------------------------------------------------

    def rotate_token(self, token: str) -> dict[str, Any]:
        """``PUT /token``: ``token`` is required from now on; the one this client sends stays accepted
        until :meth:`forget_previous_token` (sent with the new token)."""
        return self._request("PUT", "/token", json={"token": token})

    def forget_previous_token(self) -> None:
        """``DELETE /token/previous``: end a rotation; the replaced token is refused from now on."""
        self._request("DELETE", "/token/previous")

    # ---- workspaces ----------------------------------------------------------------------------

    def create_workspace(self, files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
                         on_progress: UploadProgress | None = None) -> dict[str, Any]:
        """``POST /workspaces``: each item is (path relative to the workspace root, content).
        ``on_progress(sent, total)`` is called as the request body's bytes go out."""
        return self._upload("POST", "/workspaces", files, on_progress)

    def update_workspace(self, workspace_id: str, files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
                         on_progress: UploadProgress | None = None) -> dict[str, Any]:
        """``PUT /workspaces/{id}``: add or replace files and rebuild."""
        return self._upload("PUT", f"/workspaces/{workspace_id}", files, on_progress)

    def workspaces(self) -> list[dict[str, Any]]:
        return self._request("GET", "/workspaces")["items"]

    def workspace(self, workspace_id: str) -> dict[str, Any]:
        return self._request("GET", f"/workspaces/{workspace_id}")

    def delete_workspace(self, workspace_id: str) -> Any:
        return self._request("DELETE", f"/workspaces/{workspace_id}")

    # ---- flows ---------------------------------------------------------------------------------

    def create_flow(self, workspace_id: str, filename: str, *, peers: Mapping[str, str] | None = None
                    ) -> dict[str, Any]:
        """``POST /flows?workspace_id=&filename=``: start a Flow from a YAML file in the workspace.

        ``peers``: the tokens of other daemons the Flow's Pods name (``{"gpu1:8000": token}``)."""
        params = {"workspace_id": workspace_id, "filename": filename}
        if peers:
            return self._request("POST", "/flows", params=params, json={"peers": dict(peers)})
        return self._request("POST", "/flows", params=params)

    def flows(self) -> list[dict[str, Any]]:
        return self._request("GET", "/flows")["items"]

    def hand_over_tokens(self, flow_id: str, peers: Mapping[str, str]) -> dict[str, Any]:
        """``PUT /flows/{id}/peers``: other daemons' new tokens for a running Flow (after a rotation)."""
        return self._request("PUT", f"/flows/{flow_id}/peers", json={"peers": dict(peers)})

    def flow(self, flow_id: str) -> dict[str, Any]:
        return self._request("GET", f"/flows/{flow_id}")

    def delete_flow(self, flow_id: str) -> Any:
        return self._request("DELETE", f"/flows/{flow_id}")

    def change_flow(self, flow_id: str, change: Mapping[str, Any], *, wait: bool = True,
                    timeout: float | None = 3600.0) -> dict[str, Any]:
        """``PUT /flows/{id}``: a live change ``{"kind": "scale"|"rolling_update"|"dump", "pod": ...}``.

        With ``wait`` the answer comes once the change is done (a rolling update of big replicas may
        take minutes: ``timeout`` bounds the wait); without, at once (202), and ``flow(id)["live"]``
        shows its progress."""
        body = {k: v for k, v in change.items() if v is not None}
        return self._request("PUT", f"/flows/{flow_id}", json={**body, "wait": wait}, timeout=timeout)

    # ---- deployments (fleet Flows kept by the daemon running their Gateway) ----------------------

    def deployments(self) -> list[dict[str, Any]]:
        return self._request("GET", "/deployments")["items"]

    def deployment(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/deployments/{name}")

    def put_deployment(self, name: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /deployments/{name}``: record what was applied; a new spec hash is a new release."""
        return self._request("PUT", f"/deployments/{name}", json=dict(record))

    def put_deployment_copy(self, name: str, copy: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /deployments/{name}/copy``: keep a copy of a record another daemon keeps."""
        return self._request("PUT", f"/deployments/{name}/copy", json=dict(copy))

    def lock_deployment(self, name: str, lock: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /deployments/{name}/lock``: take or renew a controller's lease on changing it."""
        return self._request("PUT", f"/deployments/{name}/lock", json=dict(lock))

    def unlock_deployment(self, name: str, owner: str | None = None, *, force: bool = False) -> dict[str, Any]:
        """``DELETE /deployments/{name}/lock``: release it (``owner``), or break it (``force``)."""
        params: dict[str, str] = {"force": "true"} if force else {"owner": owner or ""}
        return self._request("DELETE", f"/deployments/{name}/lock", params=params)

    def delete_deployment(self, name: str, *, keep_workspaces: bool = False) -> dict[str, Any]:
        """Stop the deployment's Flow, remove its workspaces and the record."""
        params = {"keep_workspaces": "true"} if keep_workspaces else None
        return self._request("DELETE", f"/deployments/{name}", params=params)

    # ---- pods / peas ---------------------------------------------------------------------------

    def create_pod(self, workspace_id: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/pods", params={"workspace_id": workspace_id}, json=dict(args))

    def pods(self) -> list[dict[str, Any]]:
        return self._request("GET", "/pods")["items"]

    def pod(self, pod_id: str, *, renew: bool = False) -> dict[str, Any]:
        """``GET /pods/{id}``; ``renew`` also renews the Pod's lease (its Flow still wants it)."""
        if renew:
            return self._request("GET", f"/pods/{pod_id}", params={"renew": "true"})
        return self._request("GET", f"/pods/{pod_id}")

    def delete_pod(self, pod_id: str) -> Any:
        return self._request("DELETE", f"/pods/{pod_id}")

    # ---- logs ----------------------------------------------------------------------------------

    def logs(self, object_id: str, *, follow: bool = False, tail: int | None = None,
             offset: int = 0) -> Iterator[dict[str, Any]]:
        """``GET /logs/{id}``: the object's log as parsed NDJSON lines; ``follow`` keeps streaming.

        ``offset`` skips the lines already received, so a dropped stream resumes where it stopped.
        """
        params: dict[str, Any] = {"follow": str(follow).lower()}
        if tail is not None:
            params["tail"] = tail
        if offset:
            params["offset"] = offset
        timeout = None if follow else self._http.timeout
        with _translate(self.address, self.name):
            with self._http.stream("GET", f"/logs/{object_id}", params=params, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    response.raise_for_status()
                for line in response.iter_lines():
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except ValueError:
                            yield {"message": line}


class _CountingStream(httpx.SyncByteStream):
    """A request body handed to the connection in small chunks, reporting the bytes sent so far:
    the next chunk is asked for once the previous one was written to the socket."""

    CHUNK = 64 * 1024

    def __init__(self, inner: Any, total: int, on_progress: UploadProgress) -> None:
        self._inner = inner
        self._total = total
        self._on_progress = on_progress

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        self._on_progress(0, self._total)
        for part in self._inner:
            for start in range(0, len(part), self.CHUNK):
                chunk = part[start:start + self.CHUNK]
                yield chunk
                sent += len(chunk)
                self._on_progress(sent, self._total)


def _parts(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    items = files.items() if isinstance(files, Mapping) else files
    return [("files", (name, content, "application/octet-stream")) for name, content in items]

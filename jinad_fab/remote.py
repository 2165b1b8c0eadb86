"""`DaemonClient`: talk to one host's `jinad` over its REST API (v1).

The client never loads the server: this module imports only ``schemas``, ``wire`` and ``errors``
(plus httpx). Every foreign error is translated in exactly one place, :func:`_translate`, into
the :class:`~jinad_fab.errors.DaemonError` family; callers read ``status_code`` and ``host``
rather than parsing messages. Bodies come back as the daemon's JSON (plain dicts), so the same
client serves the CLI, deploy fan-outs and remote Pods.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

from .errors import (
    Conflict,
    DaemonError,
    DaemonUnreachable,
    Invalid,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)

DEFAULT_TIMEOUT = 10.0

_STATUS_ERRORS: dict[int, type[DaemonError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Invalid,
}


def error_for_response(response: httpx.Response, host: str | None = None) -> DaemonError:
    """The error a non-success answer stands for, with the daemon's ``detail`` as its message."""
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = response.text[:500]
    if not isinstance(detail, str):
        detail = json.dumps(detail)[:500]
    cls = _STATUS_ERRORS.get(response.status_code, DaemonError)
    message = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    return cls(f"{message}: {detail}" if detail else message, status_code=response.status_code, host=host)


@contextlib.contextmanager
def _translate(host: str | None) -> Iterator[None]:
    """Map httpx's transport errors and bad statuses onto the DaemonError tree, in one place."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        raise error_for_response(exc.response, host) from exc
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise DaemonUnreachable(f"cannot reach jinad: {type(exc).__name__}: {exc}", host=host) from exc
    except httpx.DecodingError as exc:
        raise DaemonError(f"unreadable answer: {exc}", host=host) from exc


class DaemonClient:
    """One daemon. ``base_url`` like ``http://10.0.0.5:8000``; ``token`` is sent as a Bearer token.

    Use as a context manager (or call :meth:`close`) so the connection pool is released.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: str | bool = True,
    ):
        """``verify``: for an ``https://`` daemon, a CA bundle (path) to check its certificate with."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(verify, str):
            import ssl

            verify = ssl.create_default_context(cafile=verify)
        self.base_url = base_url.rstrip("/")
        self.name = name or self.base_url
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport,
                                  verify=verify)

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
        with _translate(self.name):
            response = self._http.request(method, path, **kwargs)
            response.raise_for_status()
            if not response.content:
                return None
            return response.json()

    # ---- health --------------------------------------------------------------------------------

    def alive(self) -> dict[str, Any]:
        """``GET /alive``: version, daemon id, uptime, runtimes, GPUs."""
        return self._request("GET", "/alive")

    def status(self) -> dict[str, Any]:
        """``GET /status``: host resources and object counts by state."""
        return self._request("GET", "/status")

    # ---- workspaces ----------------------------------------------------------------------------

    def create_workspace(self, files: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> dict[str, Any]:
        """``POST /workspaces``: each item is (path relative to the workspace root, content)."""
        items = files.items() if isinstance(files, Mapping) else files
        parts = [("files", (name, content, "application/octet-stream")) for name, content in items]
        return self._request("POST", "/workspaces", files=parts)

    def update_workspace(self, workspace_id: str, files: Mapping[str, bytes]) -> dict[str, Any]:
        parts = [("files", (name, content, "application/octet-stream")) for name, content in files.items()]
        return self._request("PUT", f"/workspaces/{workspace_id}", files=parts)

    def workspaces(self) -> list[dict[str, Any]]:
        return self._request("GET", "/workspaces")["items"]

    def workspace(self, workspace_id: str) -> dict[str, Any]:
        return self._request("GET", f"/workspaces/{workspace_id}")

    def delete_workspace(self, workspace_id: str) -> Any:
        return self._request("DELETE", f"/workspaces/{workspace_id}")

    def wait_workspace(self, workspace_id: str, timeout: float = 600.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll until the workspace is ``ACTIVE`` (returned) or ``FAILED`` (raises Conflict)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            body = self.workspace(workspace_id)
            state = body.get("state")
            if state == "ACTIVE":
                return body
            if state == "FAILED":
                raise Conflict(
                    f"workspace {workspace_id} failed to build: {body.get('error', '')}", status_code=409, host=self.name
                )
            if time.monotonic() > deadline:
                raise DaemonUnreachable(
                    f"workspace {workspace_id} still {state} after {timeout:g}s", host=self.name
                )
            time.sleep(interval)

    # ---- flows ---------------------------------------------------------------------------------

    def create_flow(self, workspace_id: str, filename: str) -> dict[str, Any]:
        """``POST /flows?workspace_id=&filename=``: start a Flow from a YAML file in the workspace."""
        return self._request("POST", "/flows", params={"workspace_id": workspace_id, "filename": filename})

    def flows(self) -> list[dict[str, Any]]:
        return self._request("GET", "/flows")["items"]

    def flow(self, flow_id: str) -> dict[str, Any]:
        return self._request("GET", f"/flows/{flow_id}")

    def delete_flow(self, flow_id: str) -> Any:
        return self._request("DELETE", f"/flows/{flow_id}")

    # ---- pods / peas ---------------------------------------------------------------------------

    def create_pod(self, workspace_id: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/pods", params={"workspace_id": workspace_id}, json=dict(args))

    def pods(self) -> list[dict[str, Any]]:
        return self._request("GET", "/pods")["items"]

    def pod(self, pod_id: str) -> dict[str, Any]:
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
        with _translate(self.name):
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


def workspace_files(root: str | pathlib.Path) -> dict[str, bytes]:
    """Every file under ``root`` keyed by its path relative to it (the multipart upload's names)."""
    root = pathlib.Path(root)
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }

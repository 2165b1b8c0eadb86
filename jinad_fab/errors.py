"""Every error jinad-fab raises on purpose derives from :class:`JinadFabError`.

The tree::

    JinadFabError
    ├── BadInput                      the caller gave something unusable (raised before any work)
    │   ├── BadDocument               a Document field has the wrong type or shape (carries doc_id)
    │   ├── BadConfig                 bad YAML, unknown keys, a cycle in `needs`, unknown Pod names
    │   └── ExecutorNotFound          `uses` names no class, file, built-in or YAML config
    ├── RuntimeFailure                something failed while a Flow was running
    │   ├── PeaStartError             a Pea/Pod did not come up (carries pod name and its log tail)
    │   ├── RequestError              a request failed inside a Pod (carries pod, exception type, traceback)
    │   ├── PodDied                   a Pea process died; requests in flight fail with this (carries pod)
    │   └── RequestTimeout            no answer within the request's deadline
    ├── DaemonError                   an answer from a jinad daemon that is not a success (carries status_code)
    │   ├── DaemonUnreachable         connection refused / DNS / TLS / timeout towards a host
    │   ├── Unauthorized              401/403: missing or wrong token
    │   ├── NotFound                  404: unknown id
    │   ├── Conflict                  409: object in the wrong state
    │   ├── PayloadTooLarge           413: upload over the configured limits
    │   └── Invalid                   400/422: the daemon refused the input
    └── DeployError                   provisioning or SSH tasks failed on some hosts (carries per-host results)
        └── HostsUnreachable          every host that failed could not be reached (exit code 4)

Errors carry data, not only text: read the attributes rather than parsing messages.
"""

from __future__ import annotations

from typing import Any


class JinadFabError(Exception):
    """Root of every error this package raises on purpose."""


class BadInput(JinadFabError, ValueError):
    """The caller passed something unusable."""


class BadDocument(BadInput):
    def __init__(self, message: str, doc_id: str | None = None):
        self.doc_id = doc_id
        super().__init__(f"Document {doc_id!r}: {message}" if doc_id is not None else message)


class BadConfig(BadInput):
    """Bad YAML, bad Flow topology, unknown arguments."""


class ExecutorNotFound(BadInput, LookupError):
    def __init__(self, uses: Any, reason: str = ""):
        self.uses = uses
        super().__init__(f"cannot load Executor from uses={uses!r}" + (f": {reason}" if reason else ""))


class RuntimeFailure(JinadFabError, RuntimeError):
    """Something failed while a Flow was running."""


class PeaStartError(RuntimeFailure):
    def __init__(self, pod: str, reason: str, log_tail: str = ""):
        self.pod = pod
        self.reason = reason
        self.log_tail = log_tail
        msg = f"Pod {pod!r} failed to start: {reason}"
        if log_tail:
            msg += "\n--- last log lines ---\n" + log_tail
        super().__init__(msg)


class RequestError(RuntimeFailure):
    def __init__(self, pod: str, exc_type: str, message: str, traceback: str = "", response: Any = None):
        self.pod = pod
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.response = response
        super().__init__(f"Pod {pod!r} failed the request: {exc_type}: {message}")


class PodDied(RuntimeFailure):
    def __init__(self, pod: str, detail: str = "", response: Any = None):
        self.pod = pod
        self.detail = detail
        self.response = response
        super().__init__(f"Pod {pod!r} died" + (f": {detail}" if detail else ""))


class RequestTimeout(RuntimeFailure, TimeoutError):
    def __init__(self, timeout: float, request_id: str = ""):
        self.timeout = timeout
        self.request_id = request_id
        super().__init__(f"no answer within {timeout:g}s for request {request_id}")


class DaemonError(JinadFabError):
    """A non-success answer from a jinad daemon."""

    def __init__(self, message: Any, status_code: int | None = None, host: str | None = None):
        self.status_code = status_code
        self.host = host
        # `detail` is what a daemon answers with: usually text, sometimes an object with a message
        self.detail = message
        text = message.get("message", str(message)) if isinstance(message, dict) else str(message)
        prefix = f"{host}: " if host else ""
        super().__init__(prefix + text)


class DaemonUnreachable(DaemonError):
    pass


class Unauthorized(DaemonError):
    pass


class NotFound(DaemonError):
    pass


class Conflict(DaemonError):
    pass


class PayloadTooLarge(DaemonError):
    pass


class Invalid(DaemonError):
    pass


class DeployError(JinadFabError):
    """Some hosts failed; `results` maps host name -> its outcome object."""

    exit_code = 2

    def __init__(self, message: str, results: dict[str, Any] | None = None):
        self.results = results or {}
        super().__init__(message)


class HostsUnreachable(DeployError):
    exit_code = 4

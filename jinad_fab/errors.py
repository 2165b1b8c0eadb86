"""Every error jinad-fab raises on purpose derives from :class:`JinadFabError`.

Each class carries two codes as class attributes, the way click's ``ClickException.exit_code``
does: ``http_status`` (what the daemon answers when a route raises it) and ``exit_code`` (what
``jinad-fab`` exits with). Raise sites never pass a status: the class is the status.

Exit codes, the same in every command: 0 fine, 1 usage (the command line itself is wrong),
2 failed (bad input, a host failed), 4 unreachable (every failed host could not be reached).

The tree (``http_status`` / ``exit_code`` where a class changes them; the root is 500 / 2)::

    JinadFabError                     500 / 2
    ├── BadInput                      400      the caller gave something unusable (raised before any work)
    │   ├── BadDocument                        a Document field has the wrong type or shape (carries doc_id)
    │   ├── BadConfig                          bad YAML, unknown keys, a cycle in `needs`, unknown Pod names
    │   │   ├── PlacementError                 (deploy.placement) no host can take a Pod (carries pod, reason)
    │   │   ├── NotExportable                  (flow.static) a Flow an engine cannot run (carries engine, reasons)
    │   │   └── OutsideWorkspace               (executors.loader) a path escapes the workspace (carries path)
    │   ├── BadAddress                    / 1  a daemon address that cannot be one (scheme, port out of range)
    │   ├── ExecutorNotFound                   `uses` names no class, file, built-in or YAML config
    │   └── AssetNotFound                      (templating) a playbook/role/inventory not shipped
    │       └── TemplateNotFound               (templating) a template name not shipped
    ├── RuntimeFailure                         something failed while a Flow was running
    │   ├── PeaStartError                      a Pea/Pod did not come up (carries pod name and its log tail)
    │   ├── RequestError                       a request failed inside a Pod (carries pod, exception type, traceback)
    │   ├── PodDied                            a Pea process died; requests in flight fail with this (carries pod,
    │   │                                      and the missing shards a write needed)
    │   ├── RequestTimeout                     no answer within the request's deadline
    │   └── ChangeInProgress          409      a running Flow/Pod is being changed already (scale, update, dump)
    ├── DaemonError                   500      an answer from a jinad daemon that is not a success
    │   │                                      (carries host, status_code, object_id, log_tail)
    │   ├── DaemonUnreachable         502 / 4  connection refused / DNS / TLS / timeout towards a host
    │   ├── Unauthorized              401      missing token
    │   │   └── Forbidden             403      wrong token
    │   ├── NotFound                  404      unknown id
    │   ├── Conflict                  409      object in the wrong state
    │   │   └── BuildFailed           409      a workspace's build failed (carries its id and build log tail)
    │   ├── PayloadTooLarge           413      upload over the configured limits
    │   ├── Invalid                   400      the daemon refused the input
    │   │   ├── Unprocessable         422      the request body is not the shape the route takes
    │   │   └── StartFailed           400      a Flow/Pod/Pea could not start (carries its id and log tail)
    │   ├── Busy                      503      too much work queued; try again later
    │   └── NotReady                  504      an object did not become ACTIVE/RUNNING in time
    ├── DeployError                            provisioning or SSH tasks failed on some hosts (carries per-host results)
    │   ├── HostsUnreachable              / 4  every host that failed could not be reached
    │   ├── DeployLocked                       (deploy.lock) another run holds the inventory's deploy lock (carries holder)
    │   └── DeploymentLocked                   (deploy.deployment) another controller is changing a deployment
    │                                          (carries who holds its lock, by host)
    ├── BuildError                             (daemon.runtimes.base) a workspace environment could not be built
    ├── WheelhouseError                        (wheelhouse) the wheels of an image could not be gathered (carries reason)
    ├── StartError                             (daemon.runtimes.base) a runtime could not launch a process
    └── ZygoteError                            (daemon.runtimes.zygotes) the zygote is unusable
        └── ZygoteUnsure                       a spawn was asked but not answered: it may have happened

Errors carry data, not only text: read the attributes rather than parsing messages.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_FAILED = 2
EXIT_UNREACHABLE = 4


class JinadFabError(Exception):
    """Root of every error this package raises on purpose."""

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = EXIT_FAILED


class BadInput(JinadFabError, ValueError):
    """The caller passed something unusable."""

    http_status = 400


class BadDocument(BadInput):
    def __init__(self, message: str, doc_id: str | None = None):
        self.doc_id = doc_id
        super().__init__(f"Document {doc_id!r}: {message}" if doc_id is not None else message)


class BadConfig(BadInput):
    """Bad YAML, bad Flow topology, unknown arguments."""


class BadAddress(BadInput):
    """A daemon address that cannot be one: unknown scheme, no host, a port out of range.

    A usage error (exit code 1): the command line or the Flow names the host wrongly.
    """

    exit_code = EXIT_USAGE

    def __init__(self, address: Any, reason: str):
        self.address = address
        self.reason = reason
        super().__init__(f"bad daemon address {address!r}: {reason}")

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
    """A Pod (or, ``shards``, some of its shards) died and no other replica could take the request."""

    def __init__(self, pod: str, detail: str = "", response: Any = None, *, shards: list[str] | None = None):
        self.pod = pod
        self.detail = detail
        self.response = response
        self.shards = list(shards or ())
        super().__init__(f"Pod {pod!r} died" + (f": {detail}" if detail else ""))


class ChangeInProgress(RuntimeFailure):
    """A live change (scale, rolling update, dump) was asked while another one runs on the same object."""

    http_status = 409

    def __init__(self, what: str, running: str):
        self.what = what
        self.running = running
        super().__init__(f"cannot {what}: {running} is in progress; try again when it is done")


class RequestTimeout(RuntimeFailure, TimeoutError):
    def __init__(self, timeout: float, request_id: str = ""):
        self.timeout = timeout
        self.request_id = request_id
        super().__init__(f"no answer within {timeout:g}s for request {request_id}")


class DaemonError(JinadFabError):
    """A non-success answer from a jinad daemon (or, on the daemon, the error a route answers with).

    ``message`` is the daemon's own text; ``object_id`` and ``log_tail`` (lines) come with errors
    about one object (a Flow that failed to start, a workspace whose build failed), and the text
    shows the tail under the message. ``status_code`` is the status the daemon answered with
    (the class's ``http_status`` for an error raised locally).
    """

    def __init__(self, message: str, *, host: str | None = None, object_id: str | None = None,
                 log_tail: list[str] | None = None):
        self.message = str(message)
        self.host = host
        self.object_id = object_id
        self.log_tail = [str(line) for line in log_tail or []]
        self.status_code: int = self.http_status
        text = (f"{host}: " if host else "") + self.message
        if self.log_tail:
            text += "\n--- last log lines ---\n" + "\n".join(self.log_tail)
        super().__init__(text)

    @property
    def detail(self) -> str | dict[str, Any]:
        """The ``detail`` of the daemon's JSON answer: the message, or an object when it names one."""
        if self.object_id is None and not self.log_tail:
            return self.message
        return {"message": self.message, "id": self.object_id, "log_tail": self.log_tail}


class DaemonUnreachable(DaemonError):
    """Connection refused, DNS, TLS or a timeout towards a host."""

    http_status = 502
    exit_code = EXIT_UNREACHABLE


class Unauthorized(DaemonError):
    """No token, where the daemon wants one."""

    http_status = 401


class Forbidden(Unauthorized):
    """A token the daemon does not accept."""

    http_status = 403


class NotFound(DaemonError):
    http_status = 404


class Conflict(DaemonError):
    """The object is in the wrong state for what was asked."""

    http_status = 409


class BuildFailed(Conflict):
    """A workspace's build failed: ``object_id`` names it, ``log_tail`` holds the build log's end."""


class PayloadTooLarge(DaemonError):
    http_status = 413


class Invalid(DaemonError):
    """The daemon refused the input."""

    http_status = 400


class Unprocessable(Invalid):
    """The request body is not the shape the route takes."""

    http_status = 422


class StartFailed(Invalid):
    """A Flow, Pod or Pea could not start: ``object_id`` names it, ``log_tail`` holds its log's end."""


class Busy(DaemonError):
    """Too much work is queued on the daemon; try again later."""

    http_status = 503


class NotReady(DaemonError, TimeoutError):
    """An object did not become ACTIVE/RUNNING within the time the caller gave it."""

    http_status = 504


class DeployError(JinadFabError):
    """Some hosts failed; `results` maps host name -> its outcome object."""

    def __init__(self, message: str, results: dict[str, Any] | None = None):
        self.results = results or {}
        super().__init__(message)


class HostsUnreachable(DeployError):
    """Every host that failed could not be reached."""

    exit_code = EXIT_UNREACHABLE

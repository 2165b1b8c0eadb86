"""The object layer: handles on a daemon's workspaces, Flows and Pods.

A handle holds the last body the daemon sent (``body``) and reads its fields from it;
``reload()`` asks again, ``wait_active()`` polls until the object is usable or has failed (then
raises with the daemon's message and the log tail), ``logs()`` streams its log::

    with DaemonClient.from_address("gpu1:8000", token) as client:
        ws = Workspace.create(client, workspace_files("my-flow/")).wait_active()
        flow = ws.start_flow("flow.yml")
        print(flow.gateway["http_port"])
        flow.delete()
        ws.delete()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from ..errors import BuildFailed, NotReady, StartFailed
from .client import DaemonClient, UploadProgress

H = TypeVar("H", bound="_Handle")

LOG_TAIL = 15
"""How many log lines an error about a failed object carries."""


class _Handle:
    _kind: ClassVar[str]  # the raw client's methods: <kind>(id) reads one, delete_<kind>(id) removes it
    active_state: ClassVar[str]
    failed_state: ClassVar[str] = "FAILED"

    def __init__(self, client: DaemonClient, body: Mapping[str, Any]):
        self.client = client
        self.body: dict[str, Any] = dict(body)

    @classmethod
    def get(cls: type[H], client: DaemonClient, object_id: str) -> H:
        """The handle of an object that already exists (raises NotFound otherwise)."""
        return cls(client, getattr(client, cls._kind)(object_id))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, state={self.state!r}, host={self.client.name!r})"

    @property
    def id(self) -> str:
        return self.body["id"]

    @property
    def state(self) -> str:
        """The state in the last body read; :meth:`reload` to ask the daemon again."""
        return str(self.body.get("state"))

    @property
    def error(self) -> str | None:
        return self.body.get("error")

    def reload(self: H) -> H:
        self.body = dict(getattr(self.client, self._kind)(self.id))
        return self

    def logs(self, *, follow: bool = False, tail: int | None = None, offset: int = 0) -> Iterator[dict[str, Any]]:
        """The object's log lines (parsed JSON); ``follow`` streams until it stops."""
        return self.client.logs(self.id, follow=follow, tail=tail, offset=offset)

    def delete(self) -> None:
        getattr(self.client, f"delete_{self._kind}")(self.id)

    def wait_active(self: H, timeout: float = 600.0, interval: float = 0.2,
                    on_state: Callable[[H], None] | None = None) -> H:
        """Poll until the object is in its active state (returned), failed (raises), or ``timeout`` passes
        (:class:`~jinad_fab.errors.NotReady`). ``on_state`` is called with the handle at each new state."""
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            if self.state != seen:
                seen = self.state
                if on_state is not None:
                    on_state(self)
            if self.state == self.active_state:
                return self
            if self.state == self.failed_state:
                raise self._failure()
            if time.monotonic() > deadline:
                raise NotReady(f"{self.id} still {self.state} after {timeout:g}s", host=self.client.name,
                               object_id=self.id)
            time.sleep(interval)
            self.reload()

    def _failure(self) -> Exception:
        tail = [str(e.get("msg") or e.get("message") or e) for e in self.logs(tail=LOG_TAIL)]
        return StartFailed(f"{self.id} is {self.state}: {self.error or 'no reason given'}", host=self.client.name,
                           object_id=self.id, log_tail=tail)


class Workspace(_Handle):
    """Uploaded files and their built environment on one daemon (``PENDING -> BUILDING -> ACTIVE``)."""

    _kind = "workspace"
    active_state = "ACTIVE"

    @classmethod
    def create(cls, client: DaemonClient, files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
               on_progress: UploadProgress | None = None) -> Workspace:
        """Upload ``files`` (workspace path -> content); the build runs in the background.
        ``on_progress(sent, total)`` follows the upload's bytes."""
        return cls(client, client.create_workspace(files, on_progress=on_progress))

    def update(self, files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
               on_progress: UploadProgress | None = None) -> Workspace:
        """Add or replace files and rebuild; :meth:`wait_active` again before starting anything."""
        self.body = dict(self.client.update_workspace(self.id, files, on_progress=on_progress))
        return self

    @property
    def build_log_tail(self) -> list[str]:
        return list(self.body.get("build_log_tail") or [])

    def _failure(self) -> Exception:
        return BuildFailed(f"workspace {self.id} failed to build: {self.error or 'no reason given'}",
                           host=self.client.name, object_id=self.id, log_tail=self.build_log_tail)

    def start_flow(self, filename: str, *, peers: Mapping[str, str] | None = None) -> FlowHandle:
        """Start the Flow in ``filename`` (a YAML file of this workspace); returns once it runs.

        ``peers``: tokens of the other daemons its Pods name (``host: gpu1:8000``)."""
        return FlowHandle(self.client, self.client.create_flow(self.id, filename, peers=peers))

    def start_pod(self, args: Mapping[str, Any]) -> PodHandle:
        """Start one Pod from its arguments (``name``, ``uses``, ``parallel``...); returns once it runs."""
        return PodHandle(self.client, self.client.create_pod(self.id, args))


class FlowHandle(_Handle):
    """A Flow running on a daemon; ``gateway`` says where its clients connect."""

    _kind = "flow"
    active_state = "RUNNING"

    @property
    def workspace_id(self) -> str:
        return self.body["workspace_id"]

    @property
    def gateway(self) -> dict[str, Any]:
        """``{"host", "http_port", "native_port"}`` (empty until the Flow runs)."""
        return dict(self.body.get("gateway") or {})

    @property
    def live(self) -> dict[str, Any]:
        """Replicas and restarts per Pod (``pods``) and the last live change (``change``)."""
        return dict(self.body.get("live") or {})

    def scale(self, pod: str, replicas: int) -> FlowHandle:
        """Give Pod ``pod`` ``replicas`` replicas while the Flow serves (returns when done)."""
        self.body = self.client.change_flow(self.id, {"kind": "scale", "pod": pod, "replicas": replicas})
        return self

    def rolling_update(self, pod: str, *, uses: str | None = None, uses_with: Mapping[str, Any] | None = None,
                       dump_path: str | None = None) -> FlowHandle:
        """Replace Pod ``pod``'s replicas one at a time (paths relative to the workspace)."""
        self.body = self.client.change_flow(self.id, {"kind": "rolling_update", "pod": pod, "uses": uses,
                                                      "uses_with": dict(uses_with) if uses_with else None,
                                                      "dump_path": dump_path})
        return self

    def dump(self, pod: str, path: str) -> FlowHandle:
        """Every shard of ``_index`` Pod ``pod`` writes its part under ``path`` (in the workspace)."""
        self.body = self.client.change_flow(self.id, {"kind": "dump", "pod": pod, "path": path})
        return self

    def follow_change(self, change: Mapping[str, Any], *, on_event: Callable[[dict[str, Any]], None] | None = None,
                      interval: float = 0.2, timeout: float = 3600.0) -> dict[str, Any]:
        """Start a live change (``{"kind": "scale"|"rolling_update"|"dump", "pod": ...}``) and follow
        it: ``on_event`` gets each replica's step (``{"pod", "replica", "step", ...}``) as the Flow
        reports it. Returns the change's last record: ``state`` is ``"done"`` or ``"failed"`` (with
        ``error``), ``result`` what the Flow answered. Raises :class:`NotReady` after ``timeout``."""
        self.body = self.client.change_flow(self.id, change, wait=False)
        change_id = ((self.body.get("live") or {}).get("change") or {}).get("id")
        deadline = time.monotonic() + timeout
        shown = 0
        while True:
            current = (self.body.get("live") or {}).get("change") or {}
            if current.get("id") == change_id:
                events = current.get("events") or []
                for event in events[shown:]:
                    if on_event is not None:
                        on_event(event)
                shown = len(events)
                if current.get("state") != "running":
                    return dict(current)
            if time.monotonic() > deadline:
                raise NotReady(f"the {change.get('kind')} of Pod {change.get('pod')!r} on {self.id} was not done "
                               f"within {timeout:g}s")
            time.sleep(interval)
            self.reload()


class PodHandle(_Handle):
    """A Pod running on a daemon; ``in_addresses`` take its input, ``ctrl_address`` its commands."""

    _kind = "pod"
    active_state = "RUNNING"

    @property
    def workspace_id(self) -> str:
        return self.body["workspace_id"]

    @property
    def in_addresses(self) -> list[str]:
        return list(self.body.get("in_addresses") or [])

    @property
    def ctrl_address(self) -> str | None:
        return self.body.get("ctrl_address")

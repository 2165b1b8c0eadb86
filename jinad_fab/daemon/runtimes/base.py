"""The interface every jinad runtime implements (``process`` here, ``docker`` next door).

A runtime decides *how* a workspace's environment is built and *how* a Flow/Pod/Pea process
runs in it. The daemon's manager owns the bookkeeping (store, states, logs, ports) and calls a
runtime only through :class:`Runtime`; the same contract test
(``tests/integration/daemon/test_runtime_contract.py``) runs against every backend.

Life cycle, as the manager drives it::

    rt.available()                             # once at start-up: list it in GET /alive?
    info = rt.build(ws, log)                   # worker thread; blocking; raise BuildError on failure
    rt.prepare(ws, wait=True)                  # same thread, before ACTIVE; at start-up one thread each
    handle = rt.start(ws, spec, log_path)      # returns at once; handle is persisted in SQLite
    rt.status(handle)                          # cheap; called on GET and by the reconciler
    rt.stop(handle, timeout)                   # idempotent; returns once nothing is left running
    rt.adopt(handle)                           # after a daemon restart: find it again or report it gone
    rt.remove_workspace(ws)                    # DELETE /workspaces/{id}: drop venv / image / network
    rt.sweep(live_objects, live_workspaces)    # now and then (daemon/gc.py): remove leftovers no record owns
    rt.close()                                 # daemon shutdown: release helpers; objects keep running

Construction: the daemon builds each runtime with ``RuntimeClass.from_settings(settings)``
(a :class:`jinad_fab.daemon.settings.DaemonSettings`: ``home``, ``build_timeout``,
``child_environment()``...). Keep ``__init__`` free of I/O; probe the host in :meth:`available`.
A runtime's private files go under ``settings.home / "runtimes" / name``.

Rules for implementations:

* A started object must survive the daemon being SIGKILLed (own session / container, never a pipe
  back to the daemon), and must never inherit the daemon's listening socket (``close_fds``).
* Its stdout and stderr go to ``log_path`` (appended); the daemon writes its own JSON-lines
  events to the same file, and the log route turns any non-JSON line into a JSON object.
* The process is ``python -m jinad_fab.launch <spec.argv(...)>``: the runtime builds the command
  from the structured :class:`LaunchSpec` (never by rewriting another command line). It writes
  ``spec.status_file`` (a path on the *host*: a container runtime must mount its directory)
  once, atomically, with ``{"state": "ready", ...}`` or ``{"state": "failed", "error": ...}``.
* A handle is a JSON-serialisable dict holding what is needed to find the object again with no
  other memory: pid + process start time for ``process``; container id + labels for ``docker``.
  It always carries ``"runtime": <name>``.
* ``status``, ``stop`` and ``adopt`` never raise for an object that is already gone.
"""

from __future__ import annotations

import abc
import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from ...errors import JinadFabError
from ...launch.command import FLOW_LOCAL_PORTS, FLOW_PORTS, POD_PORTS, launch_argv


class BuildError(JinadFabError):
    """A workspace's environment could not be built; ``reason`` is shown to the user."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class StartError(JinadFabError):
    """The runtime could not even launch the process (missing environment, bad image...)."""


@dataclasses.dataclass
class WorkspaceContext:
    """What a runtime knows about one workspace."""

    id: str
    root: pathlib.Path
    """The uploaded files; the working directory of every object started in the workspace."""
    env_dir: pathlib.Path
    """Runtime-private directory for this workspace (the venv lives here for ``process``)."""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The parsed ``.jinad`` file: ``python``, ``ports``, ``run``, ``dockerfile``, ..."""
    build_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    """What the last successful :meth:`Runtime.build` returned (interpreter path, image id...)."""
    record_build: Callable[[dict[str, Any] | None], None] | None = dataclasses.field(
        default=None, repr=False, compare=False)
    """Set by the manager during a build: a runtime starts each build command on the host with
    :func:`jinad_fab.daemon.runtimes.buildproc.popen`, passing this, so that the command's process
    group and start time are recorded and a deleted workspace or a restarted daemon can kill it."""


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """One Flow / Pod / Pea to start, as structured values; each runtime turns it into its own
    command (a venv's interpreter and host paths; a container's command, mounts and published
    ports) with :func:`jinad_fab.launch.command.launch_argv`."""

    object_id: str
    kind: Literal["flow", "pod", "pea", "gateway"]
    status_file: pathlib.Path
    """Where the object reports ready/failed, on the *host* (a container runtime mounts its directory)."""
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """A Pod/Pea/Gateway's arguments (a plain mapping: a Pod spec's dict form); not for a Flow."""
    flow_yaml: str | None = None
    """A Flow's YAML file, relative to the workspace."""
    host: str | None = None
    """The address the object binds (the runtime may override it: a container binds everywhere)."""
    ports: Mapping[str, int | None] = dataclasses.field(default_factory=dict)
    """Named ports (``port_in``/``port_ctrl``; ``port_http``/``port_native`` for a Flow). 0 or None:
    the object picks one; a container runtime picks them in advance so it can publish them."""
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    gpus: str | int | list[str] | None = None
    """GPUs the object asks for: ``"all"``, a count, or device ids (see ``runtimes/gpus.py``).
    ``docker`` sends the matching DeviceRequest; ``process`` sets ``CUDA_VISIBLE_DEVICES``."""
    log_json: bool = True

    def __post_init__(self) -> None:
        if self.kind == "flow" and not self.flow_yaml:
            raise ValueError("a Flow is launched from its YAML file (flow_yaml)")

    def port_names(self) -> tuple[str, ...]:
        """The ports this kind of object listens on."""
        return FLOW_PORTS if self.kind == "flow" else POD_PORTS

    def local_port_names(self) -> tuple[str, ...]:
        """Those of :meth:`port_names` only this daemon talks to: publish them on loopback alone."""
        return FLOW_LOCAL_PORTS if self.kind == "flow" else ()

    def argv(self, *, host: str | None = None, workspace: str | None = None,
             ports: Mapping[str, int | None] | None = None, status_file: str | None = None,
             ctrl_host: str | None = None) -> list[str]:
        """The arguments after ``python -m jinad_fab.launch``, with what the runtime decides
        (``host``, ``workspace``, ``ports``, ``status_file`` as the object sees them, and where a
        Flow's control socket binds) in place."""
        return launch_argv(self.kind, args=self.args, yaml=self.flow_yaml, host=host or self.host,
                           workspace=workspace, ports=self.ports if ports is None else ports,
                           status_file=status_file or str(self.status_file), log_json=self.log_json,
                           ctrl_host=ctrl_host)


@dataclasses.dataclass
class ObjectStatus:
    """What :meth:`Runtime.status` reports about a handle."""

    alive: bool
    exit_code: int | None = None
    detail: str = ""


BuildLog = Callable[[str, str], None]
"""``log(source, line)``: the build writes each line of output through this (e.g. ``("pip", text)``)."""


class Runtime(abc.ABC):
    """One way of running workspaces' objects on this host. Instances are shared across threads."""

    name: ClassVar[str]
    pods_grow: ClassVar[bool] = True
    """Whether a started Pod can add replicas (each binds a port of its own): a runtime whose
    objects get only the ports fixed at their start (published by a container engine) cannot."""

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Any) -> Runtime:
        """Build the runtime from the daemon's settings (no I/O here)."""

    @abc.abstractmethod
    def available(self) -> bool:
        """Whether this runtime can work on this host right now (cheap; no side effects)."""

    @abc.abstractmethod
    def build(self, workspace: WorkspaceContext, log: BuildLog) -> dict[str, Any]:
        """Build (or rebuild) the workspace's environment from its files. Blocking, idempotent.

        Runs in a worker thread. Installs ``requirements.txt`` with pip's own semantics. Returns a
        JSON-serialisable dict stored as ``workspace.build_info``. Raises :class:`BuildError`.
        """

    @abc.abstractmethod
    def start(self, workspace: WorkspaceContext, spec: LaunchSpec, log_path: pathlib.Path) -> dict[str, Any]:
        """Launch the object and return its handle at once (do not wait for readiness)."""

    @abc.abstractmethod
    def status(self, handle: dict[str, Any]) -> ObjectStatus:
        """Is the object behind ``handle`` still running?"""

    @abc.abstractmethod
    def stop(self, handle: dict[str, Any], timeout: float) -> ObjectStatus:
        """Ask it to stop (SIGTERM), wait up to ``timeout``, then kill whatever is left. Idempotent."""

    @abc.abstractmethod
    def adopt(self, handle: dict[str, Any]) -> ObjectStatus:
        """After a daemon restart: reattach to the object if it is the same one still running."""

    @abc.abstractmethod
    def remove_workspace(self, workspace: WorkspaceContext) -> None:
        """Drop everything this runtime created for the workspace (venv, image, network)."""

    @abc.abstractmethod
    def sweep(self, live_objects: set[str], live_workspaces: set[str]) -> list[str]:
        """Remove what this runtime started or made for this daemon that no live record owns any
        more (objects whose id is not in ``live_objects``, per-workspace helpers and resources of
        workspaces not in ``live_workspaces``); return one line per thing removed. Never touches
        another daemon's things. Called from the daemon's housekeeping, in a worker thread."""

    def prepare(self, workspace: WorkspaceContext, *, wait: bool = False) -> None:  # noqa: B027 - optional hook
        """Warm up what the workspace's first object will need: after a successful build, before the
        workspace is ACTIVE (``wait=True``: blocks until done, in the build's worker thread), and for
        ACTIVE workspaces at daemon start (``wait=True`` too, one thread per workspace: the daemon
        serves once they are done or after a bound).
        Never raises; whatever it could not prepare, :meth:`start` does itself."""

    def close(self) -> None:  # noqa: B027 - optional hook, most runtimes hold nothing
        """Daemon shutdown: release what the runtime holds (clients, helper processes).

        Started objects keep running; a restarted daemon adopts them."""

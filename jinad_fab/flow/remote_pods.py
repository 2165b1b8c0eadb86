"""Pods on other hosts: ``Flow().add(host='gpu1:8000', upload_files=[...])``.

A remote Pod is created through that host's ``jinad`` (:mod:`jinad_fab.remote`; the host may be
``https://gpu1:8443``, checked against the Flow's ``ca_file`` when it has one):

1. all the Pods of one Flow on one host share one workspace, made of the files their ``uses``,
   ``py_modules`` and ``upload_files`` name (paths relative to the Flow's directory are kept);
2. once the workspace is ACTIVE, ``POST /pods`` starts the Pod there; the daemon allocates its
   ports and answers with the Pod's input addresses and its control address;
3. the local Flow wires it like a local Pod: upstream sockets connect to its input addresses,
   and a ``connect`` command on its control address points its outputs at the next Pods;
4. its log is streamed back (``🌏 host pod | line``) and resumed from the last line on a drop;
5. teardown deletes the Pod and, unless ``keep_workspace``, the workspace, whatever the exit.

ZeroMQ traffic between hosts runs CURVE by default (the Flow's ``secure`` option): the Pod's keys
travel in the ``POST /pods`` body (over TLS to an https:// host) and the daemon hands them to the
Pod's processes without writing them down.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from typing import Any

import zmq

from ..errors import BadConfig, DaemonError, DaemonUnreachable, JinadFabError, NotReady, PeaStartError
from ..executors.loader import executor_spec
from ..remote import DaemonAddress, DaemonClient, TokenSource, Workspace, WorkspaceFiles
from ..runtime.curve import CurveKeys
from ..runtime.sockets import ctrl_request, make_context
from ..tokens import find_token
from .spec import PodOptions

log = logging.getLogger("jinad_fab.remote")

_LOCAL = ("127.0.0.1", "localhost", "0.0.0.0", "::1", "")


def daemon_address(host: str, port_expose: int | None = None, *, tls: bool | None = None,
                   ca_file: str | None = None) -> DaemonAddress:
    """A Pod's ``host`` (``gpu1:8000``, ``https://gpu1:8443``; ``port_expose`` when it names no port).

    ``tls`` picks the scheme of a host written without one (and refuses one written against it);
    left out, a ``ca_file`` means https: a CA bundle is only given to check a certificate."""
    if tls is None and ca_file and "://" not in host:
        tls = True
    return DaemonAddress.parse(host, default_port=int(port_expose) if port_expose else None, tls=tls)


def pod_daemon_address(spec: Any, flow_args: Any) -> DaemonAddress:
    """Where the jinad of a remote Pod answers, its own ``tls``/``ca_file`` before the Flow's."""
    tls = spec.get("tls") if spec.get("tls") is not None else flow_args.get("tls")
    return daemon_address(spec["host"], spec.get("port_expose"), tls=tls,
                          ca_file=spec.get("ca_file") or flow_args.get("ca_file"))


def is_local_host(host: str) -> bool:
    return host in _LOCAL or host.startswith("127.")


def route_address_to(host: str) -> str:
    """This machine's address on the route towards `host` (what a peer there can connect back to)."""
    if is_local_host(host):
        return "127.0.0.1"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((socket.gethostbyname(host), 9))  # UDP: no packet is sent
        return s.getsockname()[0]
    except OSError as exc:
        raise BadConfig(f"cannot find a route to {host!r}: {exc}") from exc
    finally:
        s.close()


def readdress(addresses: list[str], host: str) -> list[str]:
    """Replace loopback/wildcard hosts in tcp://h:p addresses by `host`."""
    out = []
    for a in addresses:
        proto, _, rest = a.partition("://")
        h, _, p = rest.rpartition(":")
        out.append(f"{proto}://{host}:{p}" if is_local_host(h) else a)
    return out


class PodFiles(WorkspaceFiles):
    """The files a workspace upload carries for Pods: what their ``uses``, ``py_modules`` and
    ``upload_files`` name, keyed by their path relative to the Flow's directory."""

    def add_executor(self, uses: Any, py_modules: list[str], upload_files: list[str], what: str) -> tuple[Any, list[str]]:
        """Register what one Pod needs; returns its `uses` and `py_modules` as workspace paths."""
        mods = [self.add(p, f"{what} py_modules") for p in py_modules or []]
        if isinstance(uses, str) and uses.strip().endswith((".yml", ".yaml")) and "\n" not in uses:
            cfg, cfg_dir = executor_spec(uses, self.base_dir)
            for mod in list(cfg.get("py_modules") or []) + list((cfg.get("metas") or {}).get("py_modules") or []):
                path = mod if os.path.isabs(mod) else os.path.join(cfg_dir or self.base_dir, mod)
                self.add(path, f"{what} uses {uses!r} py_modules")
            uses = self.add(uses, f"{what} uses")
        for f in upload_files or []:
            self.add(f, f"{what} upload_files")
        return uses, mods


def flow_upload(flow: Any, flow_file: str, extra: list[str] = ()) -> dict[str, bytes]:
    """Everything a whole Flow needs on a daemon: its YAML and every file its Pods name."""
    files = PodFiles(flow.base_dir)
    files.add(flow_file, "the Flow file")
    for name, spec in flow.pods.items():  # a Pod on another daemon is started from these files too
        files.add_executor(spec.get("uses"), spec.get("py_modules") or [], spec.get("upload_files") or [],
                           f"Pod {name!r}")
    for f in extra:
        files.add(f, "--upload")
    return files.payload()


def _found_token(address: DaemonAddress) -> str | None:
    return find_token(address.host)


class HostSession:
    """One daemon, one workspace: shared by every Pod of a Flow placed on that host."""

    def __init__(self, address: DaemonAddress, *, token: str | TokenSource | None, base_dir: str, quiet: bool,
                 keep_workspace: bool = False, timeout_ready: float = 600.0, ca_file: str | None = None):
        self.address = address
        self.host = address.host
        self.label = address.label
        # no token given: JINAD_TOKEN / JINAD_TOKEN_FILE, or a local daemon's <home>/token
        self.client = DaemonClient.from_address(address, token or _found_token, ca_file=ca_file)
        # a short timeout for the liveness probe: a host that vanished must not stall it for long
        self.probe = DaemonClient.from_address(address, token or _found_token, ca_file=ca_file, timeout=2.0)
        self.base_dir = base_dir
        self.quiet = quiet
        self.keep_workspace = keep_workspace
        self.timeout_ready = timeout_ready
        self.files = PodFiles(base_dir)
        self.workspace: Workspace | None = None
        self._lock = threading.Lock()

    @property
    def workspace_id(self) -> str | None:
        return self.workspace.id if self.workspace is not None else None

    def ensure_workspace(self) -> Workspace:
        with self._lock:  # Pods of one host start in parallel threads but share one workspace
            if self.workspace is None:
                self.workspace = self._create_workspace()
            return self.workspace

    def _create_workspace(self) -> Workspace:
        try:
            self.client.alive()
        except DaemonUnreachable as exc:
            raise PeaStartError(self.label, f"the jinad daemon on {self.label} is unreachable: {exc.message}") from exc
        except DaemonError as exc:
            raise PeaStartError(self.label, f"the jinad daemon on {self.label} refused us: {exc.message}") from exc
        try:
            ws = Workspace.create(self.client, self.files.payload())
        except DaemonError as exc:
            raise PeaStartError(self.label, f"could not create a workspace: {exc.message}") from exc
        self.workspace = ws  # deleted on close() even when its build fails

        def say(w: Workspace) -> None:
            _say(f"🌏 {self.label} workspace {w.id}: {w.state}", self.quiet)

        try:
            return ws.wait_active(self.timeout_ready, interval=0.2, on_state=say)
        except NotReady as exc:
            raise PeaStartError(self.label, exc.message) from exc
        except DaemonError as exc:  # BuildFailed carries the build log's tail
            raise PeaStartError(self.label, exc.message, "\n".join(exc.log_tail)) from exc

    def close(self) -> None:
        if self.workspace is not None and not self.keep_workspace:
            try:
                self.workspace.delete()
            except JinadFabError as exc:
                log.warning("could not delete workspace %s on %s: %s", self.workspace.id, self.label, exc)
            self.workspace = None
        self.client.close()
        self.probe.close()


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


class RemotePod:
    """A Pod started through a host's daemon; same surface as a local :class:`~..runtime.pod.Pod`."""

    processes: list = []

    def __init__(self, spec: dict[str, Any], session: HostSession, *, num_parts: int, quiet_logs: bool,
                 curve: CurveKeys | None = None, lease: float | None = None):
        self.name = spec["name"]
        self.curve = curve
        self.lease = lease  # the daemon stops the Pod if its probe does not renew it for this long
        self.spec = spec
        self.session = session
        self.num_parts = num_parts
        self.quiet_logs = quiet_logs
        self.pod_id: str | None = None
        self.info: dict[str, Any] = {}
        self._ctx: zmq.Context | None = None
        self._log_thread: threading.Thread | None = None
        self._stop_logs = threading.Event()
        self._last_poll = 0.0
        self._deaths_seen = 0
        self._dead: list[tuple[str, int | None]] = []
        self._probe_thread: threading.Thread | None = None
        self.unreachable_since: float | None = None
        self.args = self._args()

    @property
    def out_parts(self) -> int:
        return int(self.spec.get("shards") or 1)

    def _args(self) -> dict[str, Any]:
        s = self.spec
        uses, py_modules = self.session.files.add_executor(s.get("uses") or "_pass", s.get("py_modules") or [],
                                                           s.get("upload_files") or [], f"Pod {self.name!r}")
        # every option a Pod's processes take travels in the POST /pods body (schemas.PodCreate)
        args: dict[str, Any] = {k: s[k] for k in PodOptions.model_fields if s.get(k) is not None}
        # changeable: even a Pod of one Pea runs under a Pod host there, so the Flow can scale it, roll
        # it and have its Pea restarted while it runs (issue 15)
        args.update(name=self.name, uses=uses, py_modules=py_modules, num_parts=self.num_parts,
                    upstream=[n for n in s.get("needs") or [] if n != "gateway"], changeable=True)
        if self.curve is not None:
            args["curve"] = self.curve.to_dict()
        if self.lease:
            args["lease"] = self.lease
        return args

    def start(self) -> None:
        """Create (or reuse) the host's workspace and start the Pod there."""
        ws = self.session.ensure_workspace()
        try:
            pod = ws.start_pod(self.args)
        except DaemonError as exc:  # the daemon's message, and the Pod's log tail when it started at all
            raise PeaStartError(self.name, f"{self.session.label} could not start it: {exc.message}",
                                "\n".join(exc.log_tail)) from exc
        self.pod_id = pod.id
        self.info = pod.body
        if pod.state != "RUNNING":
            raise PeaStartError(self.name, f"{self.session.label} reports it {pod.state}: {pod.error}")
        # its replica sets (a Pod host reports them; a Pod of one Pea has none): senders follow the
        # Gateway's plan into them, and live changes name them; and its Executors' idempotent endpoints
        self.ctrl({"cmd": "status"}, timeout=10.0)
        if not self.quiet_logs:
            self._log_thread = threading.Thread(target=self._follow_logs, name=f"logs-{self.name}", daemon=True)
            self._log_thread.start()

    def wait_ready(self, deadline: float) -> None:
        if self.pod_id is None:
            raise PeaStartError(self.name, "not started")

    @property
    def in_addresses(self) -> list[str]:
        return readdress(list(self.info.get("in_addresses") or []), self.session.host)

    @property
    def in_target(self) -> list[str] | dict:
        """What upstream senders are pointed at: the Pod's replica set when its host reports one
        (senders follow the Gateway's plan), else its input addresses."""
        target = self.info.get("in_target")
        if isinstance(target, dict) and "replicas" in target:
            return {**target, "replicas": {k: readdress([a], self.session.host)[0]
                                           for k, a in target["replicas"].items()}}
        if isinstance(target, list) and target:  # its head's address, as its host last reported it
            return readdress(list(target), self.session.host)
        return self.in_addresses

    def members(self) -> dict[str, dict]:
        """The replica sets of the Pod, as its host last reported them (empty: a Pod of one Pea)."""
        return dict(self.info.get("members") or {})

    def plan_sets(self) -> dict[str, dict]:
        """What the Gateway plans requests onto: the Pod's replica sets, and its head when it has one."""
        sets = self.members()
        head = self.info.get("head")
        if head:
            sets[head["set"]] = {"pod": head.get("pod") or self.name, "replicas": list(head.get("replicas") or [])}
        return sets

    def idempotent(self) -> list[str]:
        """Endpoints its Executors mark idempotent, as its host last reported them."""
        return list(self.info.get("idempotent") or [])

    def labels(self) -> dict[str, dict[str, str]]:
        return dict(self.info.get("labels") or {})

    @property
    def live(self) -> bool:
        """Whether its host takes live changes (a Pod host: several replicas or shards)."""
        return bool(self.info.get("members"))

    def ctrl(self, cmd: dict, timeout: float = 10.0) -> dict:
        """One control command to the Pod's host; its answer's layout becomes the Pod's."""
        if self._ctx is None:
            self._ctx = make_context(self.curve)
        reply = ctrl_request(self._ctx, self.ctrl_address, cmd, timeout)
        if not reply.get("ok"):
            raise PeaStartError(self.name, f"{cmd.get('cmd')!r} refused: {reply.get('error')}")
        for key in ("in_target", "members", "labels", "idempotent", "head"):
            if key in reply:
                self.info[key] = reply[key]
        return reply

    def new_deaths(self) -> list[dict]:
        """Replicas that died since the last call (asked of the Pod's host at most every 0.1 s)."""
        now = time.monotonic()
        if not self.live or now - self._last_poll < 0.1:
            return []
        self._last_poll = now
        try:
            deaths = self.ctrl({"cmd": "status"}, timeout=2.0).get("deaths") or []
        except JinadFabError:
            return []  # the daemon's view (dead()) decides whether the whole Pod is gone
        fresh = deaths[self._deaths_seen:]
        self._deaths_seen = len(deaths)
        return fresh

    @property
    def ctrl_address(self) -> str:
        addr = self.info.get("ctrl_address")
        if not addr:
            raise PeaStartError(self.name, f"{self.session.label} gave no control address for the Pod")
        return readdress([addr], self.session.host)[0]

    def connect(self, targets: list, timeout: float = 10.0) -> None:
        if self._ctx is None:
            self._ctx = make_context(self.curve)
        reply = ctrl_request(self._ctx, self.ctrl_address, {"cmd": "connect", "targets": targets}, timeout)
        if not reply.get("ok"):
            raise PeaStartError(self.name, f"refused to connect: {reply.get('error')}")

    def dead(self) -> list[tuple[str, int | None]]:
        """Whether the daemon said the Pod no longer runs (asked about once a second, off the
        caller's thread: a host that stopped answering never stalls the Flow's monitor)."""
        if self._dead or self.pod_id is None:
            return self._dead
        if self._probe_thread is None:
            self._probe_thread = threading.Thread(target=self._probe, name=f"probe-{self.name}", daemon=True)
            self._probe_thread.start()
        return self._dead

    def unreachable_for(self) -> float:
        """Seconds the Pod's daemon has not answered (0 while it answers)."""
        since = self.unreachable_since
        return 0.0 if since is None else time.monotonic() - since

    def _probe(self) -> None:
        while not self._stop_logs.wait(1.0) and not self._dead and self.pod_id is not None:
            asked = time.monotonic()
            try:
                body = self.session.probe.pod(self.pod_id, renew=bool(self.args.get("lease")))
            except DaemonUnreachable:
                # the control path is down: the Flow decides when that makes the Pod LOST. Silent since
                # it was asked (a host that takes the connection but never answers costs the probe's timeout)
                if self.unreachable_since is None:
                    self.unreachable_since = asked
                    log.warning("Pod %s: its daemon %s does not answer", self.name, self.session.label)
                continue
            except DaemonError as exc:
                self._dead = [(f"{self.name}@{self.session.label}", None)]
                log.error("Pod %s on %s: %s", self.name, self.session.label, exc)
                return
            if body.get("state") not in ("RUNNING", "running", "STARTING"):
                self._dead = [(f"{self.name}@{self.session.label}", None)]  # before it reads as reachable
                self.unreachable_since = None
                return
            if self.unreachable_since is not None:
                log.warning("Pod %s: its daemon %s answers again", self.name, self.session.label)
            self.unreachable_since = None

    def remove_when_back(self, stopping: threading.Event, *, workspace: bool = True) -> bool:
        """A Pod replaced elsewhere while its host was lost: once that daemon answers again, stop
        the Pod there and remove the workspace it was in (nothing runs twice). False if the Flow
        stopped first."""
        self._stop_logs.set()
        while not stopping.is_set():
            try:
                if self.pod_id is not None:
                    try:
                        self.session.probe.delete_pod(self.pod_id)
                    except DaemonError as exc:
                        if exc.status_code != 404:
                            raise
                    self.pod_id = None
                if workspace and self.session.workspace is not None and not self.session.keep_workspace:
                    try:
                        self.session.probe.delete_workspace(self.session.workspace.id)
                    except DaemonError as exc:
                        if exc.status_code != 404:
                            raise
                    self.session.workspace = None
                log.warning("Pod %s: removed its stale copy on %s", self.name, self.session.label)
                return True
            except DaemonUnreachable:
                stopping.wait(2.0)
            except DaemonError as exc:
                log.warning("Pod %s: could not remove its stale copy on %s: %s", self.name, self.session.label, exc)
                stopping.wait(2.0)
        return False

    def _follow_logs(self) -> None:
        offset = 0
        prefix = f"🌏 {self.session.label} {self.name} |"
        while not self._stop_logs.is_set():
            try:
                for entry in self.session.client.logs(self.pod_id, follow=True, offset=offset):
                    offset += 1
                    if self._stop_logs.is_set():
                        return
                    msg = entry.get("msg") or entry.get("message") or entry
                    src = entry.get("source")
                    print(f"{prefix} {src + ': ' if src else ''}{msg}", file=sys.stderr, flush=True)
                return  # the stream ended: the Pod stopped
            except JinadFabError as exc:
                if self._stop_logs.wait(1.0):
                    return
                log.debug("log stream of %s dropped (%s); resuming at line %d", self.name, exc, offset)

    def close(self, timeout: float = 10.0) -> None:
        self._stop_logs.set()
        if self.pod_id is not None:
            try:
                self.session.client.delete_pod(self.pod_id)
            except JinadFabError as exc:
                log.warning("could not delete Pod %s on %s: %s", self.pod_id, self.session.label, exc)
            self.pod_id = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.session.label, "id": self.pod_id, "in_addresses": self.in_addresses}


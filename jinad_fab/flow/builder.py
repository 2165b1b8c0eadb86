"""Flow: a DAG of Pods plus a Gateway, built with ``add``/``needs`` and used as a context manager."""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import gpus
from ..client import Client
from ..document import DocumentArray
from ..errors import BadConfig, PeaStartError, PodDied, RuntimeFailure
from ..executors import Executor
from ..runtime import pea as pea_runtime
from ..runtime.child import ChildProcess
from ..runtime.curve import CurveKeys, flow_keys
from ..runtime.direct import DirectPath, reply_target
from ..runtime.pod import Pod, start_pods
from ..runtime.sockets import ctrl_request, make_context
from .live import LiveChanges
from .spec import FlowSpec, PodOptions, PodSpec, parse, secret_fields

log = logging.getLogger("jinad_fab.flow")

GATEWAY = "gateway"
LEASE_MIN = 30.0  # seconds: the shortest lease a re-placeable remote Pod gets (3 x lost_after otherwise)
_CONTROLLER = "/flow"  # the Flow's own control connections (no Pod can be named so: names hold no '/')
SECRET_KEYS = secret_fields(PodSpec) | secret_fields(FlowSpec)  # never written to YAML, never logged
# guards only the making of a Flow's shared Client (microseconds), so one lock serves every Flow
_CLIENT_LOCK = threading.Lock()
# what a Pod's processes take, wherever they run: the same fields a daemon's POST /pods body has
POD_PROCESS_KEYS = tuple(PodOptions.model_fields)


def _uses_spec(uses: Any) -> tuple[Any, list[str]]:
    """A class given as `uses` travels to the Pea process as its file plus its class name."""
    if isinstance(uses, type):
        if not issubclass(uses, Executor):
            raise BadConfig(f"uses={uses!r} is a class but not an Executor subclass")
        try:
            path = inspect.getfile(uses)
        except (TypeError, OSError) as exc:
            raise BadConfig(f"uses={uses.__name__}: the class must be defined in a .py file so the Pea "
                            f"process can import it") from exc
        if not path.endswith(".py") or not os.path.isfile(path):
            raise BadConfig(f"uses={uses.__name__}: defined in {path!r}, which a Pea process cannot import; "
                            "put it in a .py file")
        return uses.__name__, [os.path.abspath(path)]
    return uses, []


def order_by_needs(needs: dict[str, list[str]], what: str = "the Flow") -> list[str]:
    """Names ordered so each comes after the Pods it needs (depth-first, declaration order kept).

    A cycle, or a name that is not defined, is BadConfig naming it.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: placed
    order: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise BadConfig(f"{what}: the Pods' `needs` form a cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for n in needs[name]:
            if n == GATEWAY:
                continue
            if n not in needs:
                raise BadConfig(f"{what}: Pod {name!r} needs {n!r}, which is not defined")
            visit(n, path + [name])
        state[name] = 2
        order.append(name)

    for name in needs:
        visit(name, [])
    return order


class Flow:
    """A DAG of Pods and a Gateway.

    ``Flow().add(uses='_logforward').add(name='enc', uses=MyEncoder, parallel=2)``; ``add`` returns a
    new Flow, so partial Flows can be reused. ``with flow:`` starts every Pod (all at once) and the
    Gateway, and stops them all on exit, even on errors.
    """

    def __init__(self, *, fork: bool = False, **kwargs: Any):
        """``kwargs`` are the Flow's options (:class:`~jinad_fab.spec.FlowSpec`). ``fork=True`` forks Peas
        and the Gateway from this process instead of starting interpreters: only for a process that is
        nothing but this Flow (what ``python -m jinad_fab.launch flow`` is), never inside a user's program."""
        spec = parse(FlowSpec, kwargs, "Flow")
        self.args: dict[str, Any] = {"protocol": spec.protocol, "host": spec.host,
                                     "timeout_ready": spec.timeout_ready, **spec.model_dump(exclude_unset=True)}
        self._pods: dict[str, dict[str, Any]] = {}
        self._last = GATEWAY
        self.base_dir = os.getcwd()
        self._running: dict[str, Pod] = {}
        self._gateway: ChildProcess | None = None
        self._ctx = None
        self._failure: dict | None = None
        self._monitor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._client: Client | None = None
        self._fork = fork
        self._daemon_tokens: dict[str, str] = {}  # daemon host:port -> token handed over by jinad
        self._lost: dict[str, dict] = {}  # Pod name -> its LOST / REPLACED record
        self._missing: dict[str, dict[str, dict]] = {}  # Pod name -> its shards gone for good (issue 16)
        self._secure = False
        self._live: LiveChanges | None = None
        self._advertise: str | None = None
        self._direct: DirectPath | None = None  # the in-process path of this Flow's own client

    # ---- building ----
    def _copy(self) -> Flow:
        if self._running:
            raise BadConfig("cannot change a running Flow; build it before `with flow:`")
        new = Flow.__new__(Flow)
        new.__dict__.update(self.__dict__)
        new.args = copy.deepcopy(self.args)
        new._pods = copy.deepcopy(self._pods)
        new._stopping = threading.Event()
        return new

    def add(self, **kwargs: Any) -> Flow:
        """A new Flow with one more Pod; it needs the previously added Pod unless `needs` says otherwise."""
        f = self._copy()
        name = kwargs.get("name") or f"pod{len(f._pods)}"
        what = f"Flow.add(name={name!r})"
        uses, mods = _uses_spec(kwargs.get("uses", "_pass"))
        spec = parse(PodSpec, {**kwargs, "uses": uses}, what)
        if not isinstance(name, str) or not name or name == GATEWAY or "/" in name:
            raise BadConfig(f"invalid Pod name {name!r}")
        if name in f._pods:
            raise BadConfig(f"a Pod named {name!r} already exists in this Flow")
        needs = spec.needs
        if needs is None:
            needs = [f._last]
        elif isinstance(needs, str):
            needs = [needs]
        needs = list(needs)
        if not needs:
            raise BadConfig(f"Pod {name!r}: needs must name at least one Pod (or 'gateway')")
        pod = {"name": name, "uses": uses, "needs": needs, "parallel": spec.parallel, "shards": spec.shards,
               **spec.model_dump(exclude_unset=True, exclude={"name", "uses", "needs"})}
        if mods:
            pod["py_modules"] = list(pod.get("py_modules") or []) + mods
        try:
            json.dumps({k: v for k, v in pod.items() if k != "uses" or not isinstance(v, dict)})
            json.dumps(pod["uses"])
        except TypeError as exc:
            raise BadConfig(f"Pod {name!r}: arguments must be JSON-serialisable: {exc}") from exc
        for n in needs:
            if n != GATEWAY and n not in f._pods:
                raise BadConfig(f"Pod {name!r} needs {n!r}, which is not in the Flow "
                                f"(known: {', '.join([GATEWAY, *f._pods])})")
        f._pods[name] = pod
        f._last = name
        return f

    def needs(self, needs: str | list[str], name: str = "joiner", **kwargs: Any) -> Flow:
        """Join several Pods into one (a `_pass` Pod that waits for all of them)."""
        if isinstance(needs, str):
            needs = [needs]
        if len(needs) < 1:
            raise BadConfig("needs() takes the names of the Pods to join")
        return self.add(name=name, needs=list(needs), uses=kwargs.pop("uses", "_pass"), **kwargs)

    def needs_all(self, name: str = "joiner", **kwargs: Any) -> Flow:
        """Join every Pod nothing else needs yet."""
        return self.needs(self._leaves(), name=name, **kwargs)

    # ---- topology ----
    @property
    def pods(self) -> dict[str, dict[str, Any]]:
        return dict(self._pods)

    def _leaves(self) -> list[str]:
        needed = {n for p in self._pods.values() for n in p["needs"]}
        return [name for name in self._pods if name not in needed]

    def topological_order(self) -> list[str]:
        """Pod names so that each comes after what it needs; a cycle or unknown name is BadConfig."""
        return order_by_needs({name: spec["needs"] for name, spec in self._pods.items()})

    def _use_daemon_tokens(self, tokens: dict[str, str]) -> None:
        """Give remote Pods without a token of their own the one handed over for their daemon
        (keys ``host:port``, as :attr:`jinad_fab.remote.DaemonAddress.netloc`). Called again with
        a daemon's new token after ``provision rotate-token``: a client refused once asks
        :meth:`_handed_token` again, so it sends the new one from then on."""
        self._daemon_tokens.update(tokens)  # fallback hosts of a lost Pod need theirs too

    def _handed_token(self, address: Any) -> str | None:
        """The token jinad handed over for ``address``'s daemon, as it is now (a token source)."""
        return self._daemon_tokens.get(address.netloc)

    def describe_pods(self) -> list[dict[str, Any]]:
        """Each Pod of the running Flow: its name, for a remote Pod its daemon, Pod id and workspace,
        and ``lost`` when its host stopped answering (with where it was re-placed, if it was)."""
        out = []
        for name in self._pods:
            pod = self._running.get(name)
            if hasattr(pod, "describe_row"):  # a spread Pod: every replica's daemon and id
                row = pod.describe_row()
            elif pod is not None and not isinstance(pod, Pod):
                row = {"name": name, "daemon": pod.session.label, "id": pod.pod_id,
                       "workspace_id": pod.session.workspace_id}
            else:
                row = {"name": name, "daemon": None, "id": None, "workspace_id": None}
            lost = getattr(self, "_lost", {}).get(name)
            if lost is not None:
                row["lost"] = dict(lost)
            missing = getattr(self, "_missing", {}).get(name)
            if missing:  # shards no replica answers for: reads go without them, writes to them fail
                row["missing_shards"] = {s: dict(info) for s, info in missing.items()}
            out.append(row)
        return out

    # ---- running ----
    @property
    def protocol(self) -> str:
        return self.args["protocol"]

    @property
    def port_expose(self) -> int | None:
        if self._gateway is None:
            return self.args.get("port_expose")
        key = "port_http" if self.protocol == "http" else "port_native"
        return self._gateway.info[key]

    @property
    def gateway_ports(self) -> dict[str, int]:
        if self._gateway is None:
            raise BadConfig("the Flow is not running")
        return {"native_port": self._gateway.info["port_native"], "http_port": self._gateway.info["port_http"]}

    @property
    def address(self) -> str:
        return f"{self.args['host']}:{self.port_expose}"

    def start(self) -> Flow:
        """Start every Pod (all at once) and the Gateway, wire them, and watch them; on any failure
        everything already started is stopped again and the error is raised."""
        if self._running:
            return self
        self._check_startable()
        order = self.topological_order()
        bind_host, advertise = self._bind_and_advertise(order)
        keys = self._curve_keys(order, advertise)
        sessions: dict = {}
        pods, parts_out = self._make_pods(order, bind_host, sessions, keys)
        gateway = self._make_gateway(bind_host, sum(parts_out[n] for n in self._leaves()), keys)
        started = time.monotonic()
        try:
            self._launch(gateway, pods)
            self._ctx = make_context(keys[_CONTROLLER] if keys else None)
            if self._direct_possible(pods, keys):
                self._direct = DirectPath(self._ctx, bind_host, num_parts=gateway.args["num_parts"],
                                          upstream=self._leaves())
            self._wire(gateway, pods, order, advertise)
        except BaseException:
            self._abort(gateway, pods, sessions)
            raise
        self._running = pods
        self._secure = keys is not None
        self._keys = keys
        self._session_map = sessions
        self._lost = {}
        self._missing = {}
        self._sessions = list(sessions.values())
        self._gateway = gateway
        self._failure = None
        self._live = LiveChanges(self)
        self._stopping.clear()
        self._monitor = threading.Thread(target=self._watch, name="flow-monitor", daemon=True)
        self._monitor.start()
        log.info("Flow %sready in %.2fs: %d Pods, %d processes, gateway %s (native %s, http %s)%s",
                 f"{self.args['name']!r} " if self.args.get("name") else "", time.monotonic() - started, len(pods), sum(len(p.processes) for p in pods.values()) + 1,
                 self.args["host"], gateway.info["port_native"], gateway.info["port_http"],
                 "; CURVE between its Pods" if keys else "")
        return self

    # ---- the steps of start() ----
    def _direct_possible(self, pods: dict[str, Any], keys: dict | None) -> bool:
        """Whether this Flow's own client may skip the Gateway (:mod:`jinad_fab.runtime.direct`): every
        Pod runs here as processes of this program, in the clear. A Flow with a Pod on another host
        (its answers could not reach this process), with CURVE, or forked as a Flow process (which
        ``jinad`` runs for remote clients only) keeps every request on the Gateway."""
        return not self._fork and keys is None and all(isinstance(p, Pod) for p in pods.values())

    def _check_startable(self) -> None:
        if pea_runtime.LOADING_EXECUTOR:
            raise BadConfig("a Flow was started while a Pea imported its Executor's module: guard the code that "
                            "starts Flows with `if __name__ == '__main__':` or move the Executor to its own file")
        if not self._pods:
            raise BadConfig("the Flow has no Pods; add one with Flow().add(...)")

    def _bind_and_advertise(self, order: list[str]) -> tuple[str, str | None]:
        """Where local Pods and the Gateway bind, and the address peers on other machines use to
        reach them (None when every Pod is on this machine)."""
        bind_host = self.args["host"]
        remote = [n for n in order if self._pods[n].get("host")]
        if not remote:
            return bind_host, None
        from . import remote_pods

        far = [remote_pods.pod_daemon_address(self._pods[n], self.args).host for n in remote]
        far = [h for h in far if not remote_pods.is_local_host(h)]
        if not far:
            return bind_host, None
        # peers on other machines connect back to our Pods and Gateway
        if bind_host in ("127.0.0.1", "localhost"):
            bind_host = "0.0.0.0"
        return bind_host, remote_pods.route_address_to(far[0])

    @property
    def secure(self) -> bool:
        """Whether the running Flow's Pods and Gateway talk CURVE (see the ``secure`` option)."""
        return self._secure

    def _curve_keys(self, order: list[str], advertise: str | None) -> dict[str, CurveKeys] | None:
        """Fresh CURVE keys for this start, or None for plain sockets: on by default when a Pod runs on
        another host (``advertise`` is set), off when all run here; ``secure=`` decides either way."""
        secure = self.args.get("secure")
        if secure is None:
            secure = advertise is not None
        return flow_keys([*order, GATEWAY, _CONTROLLER]) if secure else None

    def _make_pods(self, order: list[str], bind_host: str, sessions: dict,
                   keys: dict[str, CurveKeys] | None = None) -> tuple[dict[str, Any], dict[str, int]]:
        """One Pod object per Pod, in order (not started); and how many parts each sends downstream."""
        pods: dict[str, Any] = {}
        parts_out: dict[str, int] = {}
        for name in order:
            spec = self._pods[name]
            num_parts = sum(1 if n == GATEWAY else parts_out[n] for n in spec["needs"])
            curve = keys[name] if keys else None
            if spec.get("spread"):  # its replicas and shards on several daemons (issue 16)
                from .spread import SpreadPod

                pods[name] = SpreadPod(self, spec, num_parts=num_parts, sessions=sessions, bind_host=bind_host,
                                       curve=curve)
            elif spec.get("host"):
                pods[name] = self._remote_pod(spec, num_parts, sessions, curve)
            else:
                pods[name] = self._local_pod(name, spec, num_parts, bind_host, curve)
            parts_out[name] = pods[name].out_parts
        return pods, parts_out

    def _remote_pod(self, spec: dict[str, Any], num_parts: int, sessions: dict, curve: CurveKeys | None = None) -> Any:
        """A Pod on another host's daemon; Pods on one daemon share its session (and workspace)."""
        from . import remote_pods

        address = remote_pods.pod_daemon_address(spec, self.args)
        sess = sessions.get(address)
        if sess is None:
            ca_file = spec.get("ca_file") or self.args.get("ca_file")
            # a token jinad handed over for this daemon is read through a source: after a rotation, the new one
            token = spec.get("token")
            handed = self._daemon_tokens.get(address.netloc)
            if handed and token in (None, "", handed):
                token = self._handed_token
            sess = sessions[address] = remote_pods.HostSession(
                address, token=token or self.args.get("token"), base_dir=self.base_dir,
                quiet=bool(self.args.get("quiet_remote_logs")),
                keep_workspace=bool(self.args.get("keep_workspace")),
                timeout_ready=float(self.args["timeout_ready"]),
                ca_file=os.path.join(self.base_dir, ca_file) if ca_file else None)
        quiet = bool(spec.get("quiet_remote_logs", self.args.get("quiet_remote_logs")))
        if self.args.get("restart") and not spec.get("restart"):
            spec = {**spec, "restart": self.args["restart"]}  # the Flow's default (a Flow run by jinad heals)
        # a Pod that may be re-placed when its host is cut off gets a lease: if that host comes back
        # while this Flow cannot reach it, its daemon stops the stale copy by itself
        lease = max(LEASE_MIN, 3 * float(self.args.get("lost_after") or 10.0)) if spec.get("fallback_hosts") else None
        return remote_pods.RemotePod(spec, sess, num_parts=num_parts, quiet_logs=quiet, curve=curve, lease=lease)

    def _local_pod(self, name: str, spec: dict[str, Any], num_parts: int, bind_host: str,
                   curve: CurveKeys | None = None) -> Pod:
        args = {k: spec[k] for k in (*POD_PROCESS_KEYS, "workspace") if spec.get(k) is not None}
        args.update(name=name, num_parts=num_parts, base_dir=self.base_dir, host=bind_host,
                    upstream=[n for n in spec["needs"] if n != GATEWAY])
        if self.args.get("log_json"):
            args["log_json"] = True
        if curve is not None:
            args["curve"] = curve.to_dict()  # reaches its processes through a pipe, never their argv
        if "workspace" not in args and self.args.get("workspace"):
            args["workspace"] = self.args["workspace"]
        env = dict(self.args.get("env") or {})
        env.update(gpus.local_env(spec.get("gpus")))
        env.update(spec.get("env") or {})  # an explicit CUDA_VISIBLE_DEVICES wins over `gpus`
        if env:
            args["env"] = env
        return Pod(args, fork=self._fork)

    def _make_gateway(self, bind_host: str, num_parts: int, keys: dict[str, CurveKeys] | None = None) -> ChildProcess:
        leaves = self._leaves()
        gw_args = {"name": GATEWAY, "host": bind_host, "num_parts": num_parts, "upstream": leaves}
        if keys:
            gw_args["curve"] = keys[GATEWAY].to_dict()
        if self.args.get("static_dir"):
            gw_args["static_dir"] = os.path.abspath(self.args["static_dir"])
        gw_args["port_http"] = self.args.get("port_http") or 0
        gw_args["port_native"] = self.args.get("port_native") or 0
        if self.args.get("port_expose"):
            gw_args["port_http" if self.protocol == "http" else "port_native"] = self.args["port_expose"]
        return ChildProcess("gateway", gw_args, label=GATEWAY, die_with_parent=True,
                            log_json=bool(self.args.get("log_json")), fork=self._fork)

    def _launch(self, gateway: ChildProcess, pods: dict[str, Any]) -> None:
        """Start the Gateway and every Pod at once; return when all are ready (raise if one is not)."""
        # the Gateway may wait as long as the slowest Pod is allowed to take (a Pod's own timeout_ready)
        deadline = time.monotonic() + max(float(self.args["timeout_ready"]),
                                          *(float(s.get("timeout_ready") or 0) for s in self._pods.values()))
        local = [p for p in pods.values() if isinstance(p, Pod)]
        far_pods = [p for p in pods.values() if not isinstance(p, Pod)]
        gateway.start()
        for p in far_pods:  # a spread Pod's head runs here: started from this thread, which outlives it
            if hasattr(p, "start_local"):
                p.start_local()
        with ThreadPoolExecutor(max_workers=max(1, len(far_pods))) as pool:
            futures = [pool.submit(p.start) for p in far_pods]  # workspaces build meanwhile
            try:
                start_pods(local, float(self.args["timeout_ready"]))
            finally:
                for fut in futures:
                    fut.exception()
            for fut in futures:
                fut.result()
        gateway.wait_ready(deadline)

    def _wire(self, gateway: ChildProcess, pods: dict[str, Any], order: list[str], advertise: str | None) -> None:
        """Connect each Pod to the Pods that need it (the last ones to the Gateway's results), then
        the Gateway to the first ones. A remote Pod is given addresses it can reach from its host."""
        self._advertise = advertise
        for name, pod in pods.items():
            pod.connect(self._targets_of(name, pods, gateway))
        # the replica sets the Gateway plans every request onto, before it takes any request
        sets: dict[str, dict] = {}
        for pod in pods.values():
            sets.update(pod.plan_sets())  # a remote Pod's host reports its sets too
        reply = ctrl_request(self._ctx, f"tcp://127.0.0.1:{gateway.info['port_ctrl']}",
                             {"cmd": "members", "sets": sets, "idempotent": self._idempotent(pods)})
        if not reply.get("ok"):
            raise PeaStartError(GATEWAY, f"refused its replica sets: {reply.get('error')}")
        reply = ctrl_request(self._ctx, f"tcp://127.0.0.1:{gateway.info['port_ctrl']}",
                             {"cmd": "connect", "targets": self._roots(pods)})
        if not reply.get("ok"):
            raise PeaStartError(GATEWAY, f"refused to connect: {reply.get('error')}")
        if self._direct is not None:  # the in-process path plans onto the same sets
            self._direct.command({"cmd": "members", "sets": sets, "idempotent": self._idempotent(pods)})
            self._direct.command({"cmd": "connect", "targets": self._roots(pods)})

    def _idempotent(self, pods: dict[str, Any] | None = None) -> list[str]:
        """Endpoints an Executor of the Flow marks idempotent, wherever its Peas run (each one reports
        them when it is ready; a remote Pod's host passes its Peas' on)."""
        pods = pods if pods is not None else self._running
        return sorted({e for pod in pods.values() for e in pod.idempotent()})

    def _reachable(self, target: list[str] | dict, sender: Any) -> list[str] | dict:
        """A target as a sender on another host must see it (loopback addresses replaced)."""
        if self._advertise and not isinstance(sender, Pod):
            from . import remote_pods

            if isinstance(target, dict):
                return {**target, "replicas": {k: remote_pods.readdress([a], self._advertise)[0]
                                               for k, a in target["replicas"].items()}}
            return remote_pods.readdress(target, self._advertise)
        return target

    def _targets_of(self, name: str, pods: dict[str, Any] | None = None,
                    gateway: ChildProcess | None = None) -> list:
        """Where Pod ``name`` sends: every Pod that needs it, and the Gateway when nothing does."""
        pods = pods if pods is not None else self._running
        gateway = gateway or self._gateway
        pod = pods[name]
        targets = [self._reachable(pods[d].in_target, pod) for d, s in self._pods.items() if name in s["needs"]]
        if name in self._leaves():
            results = f"tcp://127.0.0.1:{gateway.info['port_results']}"
            if self._direct is not None and isinstance(pod, Pod):
                targets.append(reply_target(results, self._direct.address))
            else:
                targets.append(self._reachable([results], pod))
        return targets

    def _roots(self, pods: dict[str, Any] | None = None) -> list:
        pods = pods if pods is not None else self._running
        return [pods[n].in_target for n in self.topological_order() if GATEWAY in self._pods[n]["needs"]]

    def _gateway_cmd(self, cmd: dict, timeout: float = 10.0) -> dict:
        if self._gateway is None or self._ctx is None:
            raise BadConfig("the Flow is not running")
        reply = ctrl_request(self._ctx, f"tcp://127.0.0.1:{self._gateway.info['port_ctrl']}", cmd, timeout)
        if not reply.get("ok"):
            raise RuntimeFailure(f"the gateway refused {cmd.get('cmd')!r}: {reply.get('error')}")
        if self._direct is not None:  # the in-process path follows every change the Gateway is told of
            mine = self._direct.command(cmd)
            if mine.get("ok"):
                reply = _joined(cmd["cmd"], reply, mine)
        return reply

    def _abort(self, gateway: ChildProcess, pods: dict[str, Any], sessions: dict) -> None:
        """Undo a start that failed half-way: stop what was started, release remote workspaces."""
        for pod in pods.values():
            pod.close(timeout=5)
        for sess in sessions.values():
            sess.close()
        gateway.terminate()
        gateway.wait(5)
        if self._direct is not None:
            self._direct.close(timeout=0)
            self._direct = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def _watch(self) -> None:
        """Tell the Gateway the moment a Pea dies: a replica's death is handled by the live changes
        (its requests retried or failed, the replica restarted per the Pod's policy); any other
        death fails the Flow, so requests fail fast with the Pod's name."""
        while not self._stopping.wait(0.05):
            failure = None
            if self._gateway is not None and not self._gateway.alive():
                failure = {"pod": GATEWAY, "msg": f"the gateway exited with code {self._gateway.returncode()}"}
            else:
                for name, pod in list(self._running.items()):
                    failure = self._check_pod(name, pod)
                    if failure is not None:
                        break
            if failure is None:
                continue
            self._fail(failure)
            return

    def _check_pod(self, name: str, pod: Any) -> dict | None:
        if not isinstance(pod, Pod):
            for death in pod.new_deaths():
                threading.Thread(target=self._on_remote_death, args=(name, pod, death), daemon=True,
                                 name=f"restart-{name}").start()
            dead = pod.dead()
            lost = self._lost.get(name) or {}
            if dead and lost.get("shards") is not None:
                if lost["state"] != "GONE":  # its host came back without it: its shards stay missing
                    lost["state"] = "GONE"
                    log.error("Pod %r: its host %s answers again but the Pod no longer runs there; the Flow "
                              "goes on without shard(s) %s", name, pod.session.label, ", ".join(lost["shards"]))
                return None
            if dead:
                return {"pod": name, "msg": f"Pea {dead[0][0]} exited with code {dead[0][1]}"}
            lost_after = float(self.args.get("lost_after") or 10.0)
            if lost.get("state") == "LOST" and lost.get("shards") is not None and pod.unreachable_for() == 0:
                self._host_back(name, pod)  # it answers again and its Pod still runs there
            if pod.unreachable_for() >= lost_after and self._lost.get(name, {}).get("id") != pod.pod_id:
                self._lost[name] = {"pod": name, "daemon": pod.session.label, "id": pod.pod_id, "state": "LOST",
                                    "since": time.time() - pod.unreachable_for()}
                log.error("Pod %r is LOST: its daemon %s has not answered for %.0fs", name, pod.session.label,
                          lost_after)
                threading.Thread(target=self._on_lost, args=(name, pod), name=f"lost-{name}", daemon=True).start()
            return None
        head = pod.head
        if head is not None and head.proc is not None and not head.alive() and head not in self._live._seen_dead:
            self._live._seen_dead.add(head)
            threading.Thread(target=self._on_replica_death, args=(name, pod, head), daemon=True,
                             name=f"restart-{head.label}").start()
        for row in list(pod.peas):
            for p in list(row):
                if p.proc is not None and not p.alive() and p not in self._live._seen_dead:
                    self._live._seen_dead.add(p)
                    threading.Thread(target=self._on_replica_death, args=(name, pod, p), daemon=True,
                                     name=f"restart-{p.label}").start()
        return None

    def _on_replica_death(self, name: str, pod: Pod, p: ChildProcess) -> None:
        if self._stopping.is_set():
            return
        try:
            msg = self._live.on_head_death(name, pod, p) if p is pod.head else self._live.on_death(name, pod, p)
        except Exception as exc:  # a failed restart must not go unnoticed
            log.exception("Pod %r: handling the death of %s failed", name, p.label)
            msg = f"Pea {p.label} died and could not be replaced: {exc}"
        if msg is not None and not self._stopping.is_set():
            self._fail({"pod": name, "msg": msg})

    def _on_remote_death(self, name: str, pod: Any, death: dict) -> None:
        if self._stopping.is_set():
            return
        try:
            msg = self._live.on_remote_death(name, pod, death)
        except Exception as exc:
            log.exception("Pod %r: handling the death of %s failed", name, death.get("label"))
            msg = f"Pea {death.get('label')} died and could not be replaced: {exc}"
        if msg is not None and not self._stopping.is_set():
            self._fail({"pod": name, "msg": msg})

    def _on_lost(self, name: str, old: Any) -> None:
        """A remote Pod's host is lost (issue 16): start the Pod on the first of its
        ``fallback_hosts`` that takes it, wire it in place of the lost one, and remove the stale
        copy once that host answers again. A Pod without fallbacks (an ``_index``: its data lives
        there) stays LOST and is reported so."""
        from . import remote_pods

        started = time.monotonic()
        spec = self._pods[name]
        here = old.session.address.netloc
        fallbacks = [h for h in spec.get("fallback_hosts") or []
                     if remote_pods.daemon_address(h, spec.get("port_expose")).netloc != here]
        new = None
        for target in fallbacks:
            if self._stopping.is_set():
                return
            key = remote_pods.daemon_address(target, spec.get("port_expose")).netloc
            candidate = self._remote_pod({**spec, "host": target,
                                          "token": self._daemon_tokens.get(key) or self.args.get("token")},
                                         old.num_parts, self._session_map, old.curve)
            try:
                candidate.start()
            except (PeaStartError, OSError) as exc:
                log.error("Pod %r could not be re-placed on %s: %s", name, target, exc)
                candidate.close(timeout=1)
                continue
            new = candidate
            break
        if new is None:
            log.error("Pod %r stays LOST: %s", name, "no other host took it" if fallbacks else
                      "it has no fallback host (its data lives on its host)")
            # its shards are named missing: reads answer from the others (if any), writes to them fail
            sets = list(old.members()) or [name]
            known = self._missing.get(name) or {}  # a shard already dead there stays DEAD
            self._shards_missing(name, {s: i for i, s in enumerate(sets) if s not in known},
                                 f"its host {old.session.label} is LOST", why="lost")
            return
        live = self._live
        with live._lock if live is not None else contextlib.nullcontext():
            if self._stopping.is_set() or self._running.get(name) is not old:
                new.close(timeout=1)
                return
            new.connect(self._targets_of(name))
            self._lost[name].update(state="REPLACED", to=new.session.label, new_id=new.pod_id,
                                    took=round(time.monotonic() - started, 3))
            self._running[name] = new
            if new.plan_sets():  # a Pod host: the Gateway plans onto the new replicas (and head)
                self._gateway_cmd({"cmd": "members", "sets": new.plan_sets()})
            for up in self._pods[name]["needs"]:  # everything that sent into the lost copy now sends here
                if up == GATEWAY:
                    self._gateway_cmd({"cmd": "connect", "targets": self._roots()})
                else:
                    self._running[up].connect(self._targets_of(up))
            self._sessions = list(self._session_map.values())
        log.warning("Pod %r re-placed on %s in %.1fs; its copy on %s goes when that host answers again",
                    name, new.session.label, time.monotonic() - started, old.session.label)
        shared = any(getattr(p, "session", None) is old.session for p in self._running.values())
        old.remove_when_back(self._stopping, workspace=not shared)

    # ---- shards gone for good (issue 16): see jinad_fab.runtime.shards ----
    def _shards_missing(self, name: str, shards: dict[str, int], detail: str, why: str = "dead") -> str | None:
        """Tell the Gateway that shards ``{set name: shard index}`` of Pod ``name`` have no replica
        left and none coming. None when the Flow goes on without them; for a Pod of one shard
        whose Pea died, the failure to report (the Pod is dead, as before)."""
        from ..runtime.pod import routing

        spec = self._pods[name]
        count = int(spec.get("shards") or 1)
        if count == 1 and why == "dead":
            return detail
        if not shards:
            return None
        polling = routing(spec.get("polling")) if count > 1 else {"*": "all"}
        since = time.time()
        info = {s: {"pod": name, "shard": i, "shards": count, "polling": polling, "detail": detail, "why": why}
                for s, i in shards.items()}
        try:
            self._gateway_cmd({"cmd": "shards", "missing": info}, timeout=5)
        except (RuntimeFailure, BadConfig) as exc:
            return f"{detail}; the gateway did not answer: {exc}"
        rows = self._missing.setdefault(name, {})
        for s in shards:
            rows[s] = {"state": "LOST" if why == "lost" else "DEAD", "detail": detail, "since": since}
        if name in self._lost:
            self._lost[name]["shards"] = sorted(rows)
        log.error("Pod %r goes on without shard(s) %s: %s", name, ", ".join(sorted(shards)), detail)
        return None

    def _shards_back(self, name: str, sets: list[str]) -> None:
        rows = self._missing.get(name) or {}
        back = [s for s in sets if s in rows]
        if not back:
            return
        self._gateway_cmd({"cmd": "shards", "back": back}, timeout=5)
        for s in back:
            rows.pop(s, None)
        if not rows:
            self._missing.pop(name, None)
        log.warning("Pod %r: shard(s) %s answer again", name, ", ".join(back))

    def _host_back(self, name: str, pod: Any) -> None:
        """A LOST Pod's host answers again and the Pod still runs there: it is wired as it was."""
        record = self._lost.pop(name, None)
        log.warning("Pod %r: its host %s answers again (LOST for %.0fs)", name, pod.session.label,
                    time.time() - float((record or {}).get("since") or time.time()))
        try:
            self._shards_back(name, [s for s, row in (self._missing.get(name) or {}).items() if row["state"] == "LOST"])
        except RuntimeFailure as exc:
            log.error("Pod %r: could not tell the gateway its shards are back: %s", name, exc)

    def _fail(self, failure: dict) -> None:
        if self._failure is not None:
            return
        self._failure = failure
        log.error("Pod %r died: %s", failure["pod"], failure["msg"])
        if failure["pod"] != GATEWAY:
            try:
                ctrl_request(self._ctx, f"tcp://127.0.0.1:{self._gateway.info['port_ctrl']}",
                             {"cmd": "pod_failed", "pod": failure["pod"], "detail": failure["msg"]},
                             timeout=5)
            except Exception as exc:  # the gateway may be gone as well
                log.warning("could not tell the gateway: %s", exc)
        if self._direct is not None:
            self._direct.command({"cmd": "pod_failed", "pod": failure["pod"], "detail": failure["msg"]})

    # ---- live changes (see jinad_fab.flow.live) ----
    def scale(self, pod: str, replicas: int, *, progress: Any = None) -> dict:
        """Give Pod ``pod`` (each shard of it) ``replicas`` replicas, while requests keep flowing."""
        return self._live_changes().scale(pod, replicas, progress)

    def rolling_update(self, pod: str, *, uses: Any = None, uses_with: dict | None = None,
                       dump_path: str | None = None, progress: Any = None) -> dict:
        """Replace the replicas of Pod ``pod`` one at a time by ones with a new ``uses``/``uses_with``
        (or loading an index dump from ``dump_path``); each new one is ready before an old one leaves."""
        return self._live_changes().rolling_update(pod, uses=uses, uses_with=uses_with, dump_path=dump_path,
                                                   progress=progress)

    def dump(self, pod: str, path: str) -> dict:
        """Ask every shard of Pod ``pod`` (an ``_index``) to write a consistent dump under ``path``."""
        return self._live_changes().dump(pod, path)

    def live_status(self) -> dict:
        """Replicas and restarts per Pod, and the change running now (None when idle)."""
        return self._live_changes().status()

    def _live_changes(self) -> Any:
        if self._live is None or not self._running:
            raise BadConfig("the Flow is not running: use `with flow:` or flow.start()")
        return self._live

    def _send_only(self, pod: str, endpoint: str, parameters: dict, timeout: float) -> dict:
        """One request to ``endpoint`` that only Pod ``pod`` runs (the others pass it on); its header."""
        import orjson
        import zmq

        from ..errors import RequestTimeout
        from ..wire import Message, new_header

        rid = os.urandom(16).hex()
        header = dict(new_header(rid, endpoint, parameters), only=pod)
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        try:
            s.connect(f"tcp://127.0.0.1:{self._gateway.info['port_native']}")
            s.send_multipart(Message(header, docs=DocumentArray()).frames())
            if not s.poll(int(timeout * 1000)):
                raise RequestTimeout(timeout, rid)
            answer = Message.from_frames(s.recv_multipart())
        finally:
            s.close(linger=0)
        err = answer.header.get("err")
        if err:
            if err.get("type") == "PodDied":
                raise PodDied(err.get("pod", pod), err.get("msg", ""))
            from ..errors import RequestError

            raise RequestError(err.get("pod", pod), err.get("type", "?"), err.get("msg", ""), err.get("tb", ""))
        return orjson.loads(orjson.dumps(answer.header.get("params") or {}))

    @property
    def failure(self) -> dict | None:
        """Which Pod died while the Flow ran (None while all is well)."""
        return self._failure

    def close(self) -> None:
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=2)
            self._monitor = None
        live = self._live
        held = live is not None and live._lock.acquire(timeout=30)  # let a change finish its step
        try:
            self._close_processes()
        finally:
            if held:
                live._lock.release()
            if live is not None:
                live.shutdown()

    def _close_processes(self) -> None:
        if self._direct is not None:  # a call still waiting is answered (PodDied) before its Pods go
            self._direct.close()
            self._direct = None
        procs = [p for pod in self._running.values() for p in pod.processes]
        if self._gateway is not None:
            procs.append(self._gateway)
        from ..runtime.child import stop_all

        stop_all(procs, timeout=10)
        for pod in self._running.values():
            pod.close(timeout=1)
        for sess in getattr(self, "_sessions", ()):
            sess.close()
        self._sessions = []
        self._running = {}
        self._gateway = None
        self._live = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def __enter__(self) -> Flow:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- talking to it ----
    def client(self, protocol: str | None = None, *, direct: bool = True, **kwargs: Any) -> Client:
        """A Client of this Flow. Native calls take the in-process path to the Pods when the Flow has
        one (every Pod local, no CURVE; see :mod:`jinad_fab.runtime.direct`) and no other thread's
        call holds it; ``direct=False``, HTTP and concurrent calls go through the Gateway."""
        if self._gateway is None:
            raise BadConfig("the Flow is not running: use `with flow:` or flow.start()")
        protocol = protocol or self.protocol
        port = self._gateway.info["port_http" if protocol == "http" else "port_native"]
        client = Client(port=port, protocol=protocol, timeout=self.args.get("timeout"),
                        **({"prefetch": self.args["prefetch"]} if self.args.get("prefetch") else {}),
                        health=lambda: self._failure, **kwargs)
        if direct and protocol == "native":
            client._direct = self._direct
        return client

    @property
    def direct(self) -> bool:
        """Whether this running Flow's own client skips the Gateway (see :meth:`client`)."""
        return self._direct is not None

    def _shared_client(self) -> Client:
        """The Client of post/index/search/..., made once even when several threads call at the same time."""
        with _CLIENT_LOCK:
            if self._client is None:
                self._client = self.client()
            return self._client

    def post(self, on: str, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        """Send `inputs` to endpoint `on`: ``f.post('/custom', docs, on_done=print, top_k=3)``.

        Keyword arguments are :meth:`Client.post`'s (``on_done``, ``request_size``, ``show_progress``...);
        any other one is an endpoint parameter, as in Jina (``top_k=3`` -> ``parameters={'top_k': 3}``).
        """
        return self._shared_client().post(on, inputs, **kwargs)

    def index(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return self.post("/index", inputs, **kwargs)

    def search(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return self.post("/search", inputs, **kwargs)

    def update(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return self.post("/update", inputs, **kwargs)

    def delete(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        """Delete by Documents or ids: ``f.delete(['id1', 'id2'])``."""
        return self._shared_client().delete(inputs, **kwargs)

    def index_lines(self, lines: Iterable[str] | None = None, filepath: str | None = None,
                    size: int | None = None, sampling_rate: float | None = None, line_format: str = "text",
                    **kwargs: Any) -> DocumentArray | None:
        """Index one text Document per line: ``f.index_lines(lines=['hello', 'jina'])`` or ``filepath=``."""
        from ..feeders import from_lines

        return self.index(from_lines(lines, filepath, size=size, sampling_rate=sampling_rate,
                                     line_format=line_format), **kwargs)

    def search_lines(self, lines: Iterable[str] | None = None, filepath: str | None = None,
                     size: int | None = None, sampling_rate: float | None = None, line_format: str = "text",
                     **kwargs: Any) -> DocumentArray | None:
        from ..feeders import from_lines

        return self.search(from_lines(lines, filepath, size=size, sampling_rate=sampling_rate,
                                      line_format=line_format), **kwargs)

    def block(self, stop_event: threading.Event | None = None) -> None:
        """Serve until Ctrl-C, SIGTERM or `stop_event` is set: ``with f: f.block()``.

        A Flow that is not running is started here and closed on return. A Pod that dies ends the
        wait with :class:`~jinad_fab.errors.PodDied` naming it (serving a broken Flow helps nobody).
        """
        started_here = self._gateway is None
        if started_here:
            self.start()
        stop = stop_event or threading.Event()
        in_main = threading.current_thread() is threading.main_thread()  # only it can handle signals
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set()) if in_main else None
        try:
            while not stop.wait(0.1):
                if self._failure:
                    raise PodDied(self._failure["pod"], self._failure["msg"])
        except KeyboardInterrupt:
            log.info("interrupted: closing the Flow")
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            if started_here:
                self.close()

    # ---- YAML ----
    def to_dict(self) -> dict[str, Any]:
        from .yaml import flow_to_dict

        return flow_to_dict(self)

    def save_config(self, path: str) -> None:
        from .yaml import save_flow

        save_flow(self, path)

    @classmethod
    def load_config(cls, source: str) -> Flow:
        """A Flow from a YAML file path or a YAML string (``!Flow`` / ``version: 1`` / ``pods:``)."""
        from .yaml import load_flow

        return load_flow(source)

    def plot(self, path: str | None = None, engine: str = "auto") -> str:
        """Draw the Flow's DAG as SVG (written to `path` if given); returns the SVG text.

        Graphviz's ``dot`` lays it out when it is on PATH, else a built-in layout does (see
        :func:`jinad_fab.viz.render_svg`)."""
        from ..viz import flow_svg

        return flow_svg(self, path, engine)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        name = f" {self.args['name']!r}" if self.args.get("name") else ""
        return f"<Flow{name} {state} pods={list(self._pods)}>"

    # ---- feeders: stream arrays, CSV, NDJSON and files into the Flow (see jinad_fab.feeders) ----
    def index_ndarray(self, array: Any, axis: int = 0, field: str = "embedding", size: int | None = None,
                      shuffle: bool = False, **kwargs: Any) -> DocumentArray | None:
        """Index one Document per row of `array` (the row as its embedding, or blob)."""
        from ..feeders import from_ndarray

        return self.index(from_ndarray(array, axis=axis, field=field, size=size, shuffle=shuffle), **kwargs)

    def search_ndarray(self, array: Any, axis: int = 0, field: str = "embedding", size: int | None = None,
                       shuffle: bool = False, **kwargs: Any) -> DocumentArray | None:
        from ..feeders import from_ndarray

        return self.search(from_ndarray(array, axis=axis, field=field, size=size, shuffle=shuffle), **kwargs)

    def index_csv(self, fp: Any, field_resolver: dict | None = None, size: int | None = None,
                  sampling_rate: float | None = None, **kwargs: Any) -> DocumentArray | None:
        """Index one Document per CSV row; `field_resolver` maps columns to fields, e.g. {'pic_url': 'uri'}."""
        from ..feeders import from_csv

        return self.index(from_csv(fp, field_resolver, size=size, sampling_rate=sampling_rate), **kwargs)

    def search_csv(self, fp: Any, field_resolver: dict | None = None, size: int | None = None,
                   sampling_rate: float | None = None, **kwargs: Any) -> DocumentArray | None:
        from ..feeders import from_csv

        return self.search(from_csv(fp, field_resolver, size=size, sampling_rate=sampling_rate), **kwargs)

    def index_ndjson(self, fp: Any, field_resolver: dict | None = None, size: int | None = None,
                     sampling_rate: float | None = None, **kwargs: Any) -> DocumentArray | None:
        """Index one Document per NDJSON line; `field_resolver` maps keys to fields, e.g. {'question_id': 'id'}."""
        from ..feeders import from_ndjson

        return self.index(from_ndjson(fp, field_resolver, size=size, sampling_rate=sampling_rate), **kwargs)

    def search_ndjson(self, fp: Any, field_resolver: dict | None = None, size: int | None = None,
                      sampling_rate: float | None = None, **kwargs: Any) -> DocumentArray | None:
        from ..feeders import from_ndjson

        return self.search(from_ndjson(fp, field_resolver, size=size, sampling_rate=sampling_rate), **kwargs)

    def index_files(self, patterns: Any, recursive: bool = True, size: int | None = None,
                    sampling_rate: float | None = None, read_mode: str | None = "auto",
                    **kwargs: Any) -> DocumentArray | None:
        """Index one Document per file matching the globs, its content read as text or bytes by mime type."""
        from ..feeders import from_files

        return self.index(from_files(patterns, recursive, size=size, sampling_rate=sampling_rate,
                                     read_mode=read_mode), **kwargs)

    def search_files(self, patterns: Any, recursive: bool = True, size: int | None = None,
                     sampling_rate: float | None = None, read_mode: str | None = "auto",
                     **kwargs: Any) -> DocumentArray | None:
        from ..feeders import from_files

        return self.search(from_files(patterns, recursive, size=size, sampling_rate=sampling_rate,
                                      read_mode=read_mode), **kwargs)


def _joined(cmd: str, gateway: dict, direct: dict) -> dict:
    """One reply for a command both entries ran: counts added up, loads of each replica summed
    (a replica drains when neither holds a request on it)."""
    out = dict(gateway)
    for key in ("retried", "failed", "parked", "pending"):
        if isinstance(direct.get(key), int) and isinstance(out.get(key), int):
            out[key] += direct[key]
    if cmd == "status":
        inflight = {name: dict(loads) for name, loads in (gateway.get("inflight") or {}).items()}
        for name, loads in (direct.get("inflight") or {}).items():
            mine = inflight.setdefault(name, {})
            for rid, n in loads.items():
                mine[rid] = mine.get(rid, 0) + n
        out["inflight"] = inflight
    return out

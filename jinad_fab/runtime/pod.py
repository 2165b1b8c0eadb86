"""A Pod: a named group of Peas — `parallel` replicas, `shards`, and a head when one is needed.

Layouts:

* ``parallel=1, shards=1``: one Pea; it joins parts itself when it has several upstreams.
* ``parallel=N``: N replica Peas, a *replica set*: upstream senders hold a socket per replica and
  send each request to the replica the Gateway planned for it (see :mod:`.targets`). With several
  upstreams a head Pea first joins the parts of each request.
* ``shards=N`` (each with ``parallel`` replicas): a head Pea routes each request — to every shard
  (polling ``all``, the default for ``/search``) or split by Document id (polling ``id``, the
  default for everything else, so update/delete reach the shard that holds the id). Downstream
  receives one part per shard and merges them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import BadConfig, PeaStartError
from .child import ChildProcess, stop_all
from .sockets import connect_host, ctrl_request, make_context

DEFAULT_POLLING = {"/search": "all", "/dump": "all", "*": "id"}  # /dump: every shard answers
# what the Pod itself consumes (counts, routing, its processes' env and start-up, its own wiring);
# every other argument is an option of its Peas and is handed to each of them as it is
POD_OWN_KEYS = frozenset({"name", "host", "parallel", "shards", "polling", "env", "gpus", "timeout_ready",
                          "port_in", "port_ctrl", "num_parts", "upstream", "log_json", "targets",
                          "restart", "restart_limit", "restart_window", "changeable", "shard_of"})


def routing(polling: str | dict | None) -> dict[str, str]:
    """A sharded Pod's routing table from its ``polling`` option: endpoint -> ``all`` | ``id``.

    ``'all'`` or ``'any'`` alone applies to every endpoint (Jina's ``polling='any'``: each Document
    reaches one shard; here the shard its id hashes to, so update/delete find it again). In a
    mapping, ``'*'`` names every endpoint not listed and then replaces the defaults entirely.
    """
    if polling is None:
        polling = {}
    if isinstance(polling, str):
        polling = {"*": polling}
    table = {} if "*" in polling else dict(DEFAULT_POLLING)
    for endpoint, mode in polling.items():
        if mode not in ("all", "any", "id"):
            raise BadConfig(f"polling for {endpoint!r} must be 'all', 'any' or 'id', not {mode!r}")
        table[endpoint] = "id" if mode == "any" else mode
    table.setdefault("*", DEFAULT_POLLING["*"])
    return table


def validate_pod_args(args: dict) -> dict:
    """The counts a Pod cannot start without. The options themselves were checked against the Pod
    spec by whoever built ``args`` (``Flow.add``, the daemon's ``PodCreate``): the runtime keeps no
    list of them, so an option added to the spec reaches the Pod without touching this layer."""
    out = dict(args)
    for key in ("parallel", "shards"):
        v = out.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise BadConfig(f"Pod {args.get('name')!r}: {key} must be an integer >= 1, got {v!r}")
        out[key] = v
    return out


class Pod:
    """Starts, wires and stops the Peas of one Pod (in the caller's process tree)."""

    def __init__(self, args: dict, *, die_with_parent: bool = True, fork: bool = False):
        self.args = validate_pod_args(args)
        self.fork = fork
        self.name: str = self.args["name"]
        self.parallel: int = self.args.get("parallel", 1)
        self.shards: int = self.args.get("shards", 1)
        self.num_parts: int = int(self.args.get("num_parts") or 1)
        self.die_with_parent = die_with_parent
        self.head: ChildProcess | None = None
        self.peas: list[list[ChildProcess]] = []  # [shard][replica]
        self._ctx = None
        self._needs_head = self.shards > 1 or (self.parallel > 1 and self.num_parts > 1)
        self._next_replica = self.parallel  # replica ids are never reused: a late message cannot reach a newcomer
        self.draining: set[str] = set()  # labels of replicas planned onto no more (scale down, rolling update)
        self.out_targets: list | None = None
        self._head_id = 0  # a restarted head is another member of the head's set (see plan_sets)

    @property
    def needs_head(self) -> bool:
        # decided by the layout the Pod started with: scaling changes `parallel`, never the layout
        return self._needs_head

    @property
    def out_parts(self) -> int:
        """How many messages one request becomes on its way out of this Pod."""
        return self.shards

    @property
    def processes(self) -> list[ChildProcess]:
        return ([self.head] if self.head else []) + [p for shard in self.peas for p in shard]

    def _pea_args(self, shard: int | None, replica: int, num_parts: int) -> dict:
        a = self.args
        # every option that is not the Pod's own is its Peas': a Pea option added to the spec reaches them
        pea = {k: v for k, v in a.items() if k not in POD_OWN_KEYS and v is not None}
        label = self.name
        shards = self.shards
        if a.get("shard_of") and self.shards == 1:  # one shard of a Pod spread over hosts (issue 16)
            shard, shards = (int(x) for x in a["shard_of"])
        if shards > 1:
            label += f"/shard-{shard}"
        if self.parallel > 1 or replica > 0:
            label += f"/replica-{replica}"
        pea.update(name=label, pod=self.name, host=a.get("host") or "127.0.0.1", num_parts=num_parts,
                   shard_id=shard, replica_id=replica, shards=shards, parallel=self.parallel,
                   upstream=a.get("upstream") or [])
        single = not self.needs_head and self.parallel == 1 and replica == 0
        if single:
            pea["port_in"] = a.get("port_in") or 0
        return pea

    def start(self) -> None:
        """Launch every process of this Pod; call :meth:`wait_ready` next (lets Pods start in parallel)."""
        env = self.args.get("env") or None
        cwd = self.args.get("base_dir")
        log_json = bool(self.args.get("log_json"))
        if self.needs_head:
            head_args = {"name": f"{self.name}/head", "pod": self.name, "host": self.args.get("host") or "127.0.0.1",
                         "num_parts": self.num_parts, "port_in": self.args.get("port_in") or 0,
                         "upstream": self.args.get("upstream") or [], "curve": self.args.get("curve"),
                         "route": {"polling": routing(self.args.get("polling"))
                                   if self.shards > 1 else {"*": "all"}}}
            self.head = ChildProcess("pea", head_args, label=head_args["name"], env=env, cwd=cwd,
                                       die_with_parent=self.die_with_parent, log_json=log_json, fork=self.fork)
        inner_parts = 1 if self.needs_head else self.num_parts
        for s in range(self.shards):
            row = []
            for r in range(self.parallel):
                pa = self._pea_args(s if self.shards > 1 else None, r, inner_parts)
                row.append(ChildProcess("pea", pa, label=pa["name"], env=env, cwd=cwd,
                                          die_with_parent=self.die_with_parent, log_json=log_json,
                                          fork=self.fork))
            self.peas.append(row)
        for p in self.processes:
            p.start()

    def wait_ready(self, deadline: float) -> None:
        try:
            for p in self.processes:
                p.wait_ready(deadline)
        except PeaStartError as exc:
            self.close()
            raise PeaStartError(self.name, f"{exc.pod}: {exc.reason}", exc.log_tail) from exc

    def _addr(self, p: ChildProcess, port_key: str = "port_in") -> str:
        return f"tcp://{connect_host(self.args.get('host') or '127.0.0.1')}:{p.info[port_key]}"

    @property
    def in_addresses(self) -> list[str]:
        """Where upstream senders connect (one address, or one per replica)."""
        if self.head is not None:
            return [self._addr(self.head)]
        return [self._addr(p) for p in self.peas[0]]

    def set_name(self, shard: int) -> str:
        """The name of one shard's replica set (the Pod's own name when it has one shard)."""
        if self.shards == 1 and self.args.get("shard_of"):  # one shard of a spread Pod (issue 16)
            return f"{self.name}/shard-{int(self.args['shard_of'][0])}"
        return self.name if self.shards == 1 else f"{self.name}/shard-{shard}"

    def _set_target(self, shard: int) -> dict:
        return {"set": self.set_name(shard),
                "replicas": {str(p.args["replica_id"]): self._addr(p) for p in self.peas[shard]}}

    @property
    def in_target(self) -> list[str] | dict:
        """What an upstream sender is pointed at: the head's address, or the Pod's replica set."""
        if self.head is not None:
            return [self._addr(self.head)]
        return self._set_target(0)

    def members(self) -> dict[str, dict]:
        """The replica sets of this Pod and the replicas requests may be planned onto (not draining)."""
        return {self.set_name(s): {"pod": self.name, "replicas": [str(p.args["replica_id"]) for p in row
                                                                 if p.label not in self.draining]}
                for s, row in enumerate(self.peas)}

    def idempotent(self) -> list[str]:
        """Endpoints its Executors mark idempotent (each Pea reports them when it is ready)."""
        return sorted({e for p in self.processes for e in p.info.get("idempotent") or ()})

    @property
    def head_set(self) -> str:
        return f"{self.name}/head"

    def plan_sets(self) -> dict[str, dict]:
        """What the Gateway plans every request onto: the replica sets, and the head as a set of one
        when the Pod has one. A request lost in a dead head is then known (and retried once a new
        head is wired), and requests wait for the new head instead of going to the dead one."""
        sets = self.members()
        if self.head is not None:
            sets[self.head_set] = {"pod": self.name, "replicas": [str(self._head_id)] if self.head.alive() else []}
        return sets

    @property
    def head_id(self) -> str:
        return str(self._head_id)

    def restart_head(self, deadline: float, timeout: float = 10.0,
                     spawn: Callable[[ChildProcess], None] | None = None) -> ChildProcess:
        """Start a new head in place of one that exited, with its arguments (a new input port unless
        the Pod was given one) and wire it to the shards; its upstream senders are the caller's."""
        old = self.head
        assert old is not None
        p = ChildProcess("pea", dict(old.args), label=old.label, env=self.args.get("env") or None,
                         cwd=self.args.get("base_dir"), die_with_parent=self.die_with_parent,
                         log_json=bool(self.args.get("log_json")), fork=self.fork)
        (spawn or ChildProcess.start)(p)
        try:
            p.wait_ready(deadline)
            self.head = p
            self.connect_head(timeout)
        except BaseException:
            self.head = old
            stop_all([p], timeout=5)
            raise
        old.wait(1)
        self._head_id += 1
        return p

    def connect(self, targets: list, timeout: float = 10.0) -> None:
        """Wire this Pod's outputs to its downstream targets (and its head to its shards)."""
        if self._ctx is None:
            self._ctx = make_context(self.args.get("curve"))
        self.out_targets = targets
        self.connect_head(timeout)
        for row in self.peas:
            for p in row:
                self._ctrl(p, {"cmd": "connect", "targets": targets}, timeout)

    def connect_head(self, timeout: float = 10.0) -> None:
        # a dead head is wired when a new one takes its place (restart_head)
        if self.head is not None and (self.head.proc is None or self.head.alive()):
            shard_targets = [self._set_target(s) for s in range(self.shards)]
            self._ctrl(self.head, {"cmd": "connect", "targets": shard_targets}, timeout)

    # ---- live changes: replicas come and go while requests flow ----
    def replicas(self, shard: int = 0) -> list[ChildProcess]:
        return list(self.peas[shard])

    def add_replica(self, shard: int, deadline: float, timeout: float = 10.0,
                    spawn: Callable[[ChildProcess], None] | None = None) -> ChildProcess:
        """Start one more replica of a shard with the Pod's current arguments, wait until it is ready
        and wire its output. Upstream senders and the Gateway learn of it from the caller.

        ``spawn(process)`` starts the process; give one that runs in a thread living as long as the
        Pod (the kernel's parent-death signal follows the thread that started a child, not the process)."""
        rid = self._next_replica
        self._next_replica += 1
        pa = self._pea_args(shard if self.shards > 1 else None, rid, 1 if self.needs_head else self.num_parts)
        pa.pop("port_in", None)
        p = ChildProcess("pea", pa, label=pa["name"], env=self.args.get("env") or None,
                         cwd=self.args.get("base_dir"), die_with_parent=self.die_with_parent,
                         log_json=bool(self.args.get("log_json")), fork=self.fork)
        (spawn or ChildProcess.start)(p)
        try:
            p.wait_ready(deadline)
            if self._ctx is None:
                self._ctx = make_context(self.args.get("curve"))
            if self.out_targets is not None:
                self._ctrl(p, {"cmd": "connect", "targets": self.out_targets}, timeout)
        except BaseException:
            stop_all([p], timeout=5)
            raise
        self.peas[shard].append(p)
        self.parallel = max(len(row) for row in self.peas)
        return p

    def remove_replica(self, p: ChildProcess, timeout: float = 10.0) -> None:
        """Stop one replica (its upstream senders and the Gateway were told first) and forget it."""
        for row in self.peas:
            if p in row:
                row.remove(p)
        self.draining.discard(p.label)
        stop_all([p], timeout)
        self.parallel = max(1, max(len(row) for row in self.peas))

    def shard_of_pea(self, p: ChildProcess) -> int | None:
        for s, row in enumerate(self.peas):
            if p in row:
                return s
        return None

    def _ctrl(self, p: ChildProcess, cmd: dict, timeout: float) -> dict:
        reply = ctrl_request(self._ctx, self._addr(p, "port_ctrl"), cmd, timeout)
        if not reply.get("ok"):
            raise PeaStartError(p.label, f"control command {cmd['cmd']!r} refused: {reply.get('error')}")
        return reply

    def dead(self) -> list[tuple[str, int | None]]:
        """Peas of this Pod whose process has exited, with their exit codes."""
        return [(p.label, p.returncode()) for p in self.processes if p.proc is not None and not p.alive()]

    def close(self, timeout: float = 10.0) -> None:
        stop_all(self.processes, timeout)
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "parallel": self.parallel, "shards": self.shards,
                "in_addresses": self.in_addresses, "pids": [p.pid for p in self.processes],
                "replicas": [[p.label for p in row] for row in self.peas]}


def start_pods(pods: list[Pod], timeout: float) -> None:
    """Start several Pods at once and wait for all; on any failure stop them all and re-raise.

    Each Pod may take its own ``timeout_ready`` seconds; ``timeout`` is for those that set none.
    """
    started = time.monotonic()
    try:
        for pod in pods:
            pod.start()
        for pod in pods:
            pod.wait_ready(started + float(pod.args.get("timeout_ready") or timeout))
    except BaseException:
        for pod in pods:
            pod.close(timeout=5)
        raise

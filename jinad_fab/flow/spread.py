"""A Pod spread over several hosts (issue 16): one Pod to the user, its Peas on several daemons.

`flow up` and `render flow` give a Pod ``spread:`` when placement put its replicas or shards on
several hosts (:mod:`jinad_fab.deploy.placement`). The Flow runs it as:

* one remote Pod of one Pea per replica (a *slot*), started through its part's daemon; the slots
  and Pods of one Flow on one daemon share a workspace there, as every remote Pod does. The slots
  of a sharded Pod carry ``shard_of``, so each opens its own shard's store;
* the replicas of one shard, whatever their hosts, form ONE replica set named as a local Pod's
  (``enc``, ``idx/shard-1``): the Gateway plans each request onto one member and senders follow
  the plan (:mod:`jinad_fab.runtime.targets`), so a request meets exactly one replica of it;
* with several shards, a head Pea in the Flow's own process routes each request to every shard
  (or to the shard its Documents' ids hash to) and the next Pod merges their parts, as for a Pod
  whose shards run here.

It answers the control commands of a Pod host itself (``status``, ``add_replica``, ``drain``,
``remove_replica``), so live changes drive it as they drive any Pod on a jinad host
(:mod:`.live`): scaling, rolling updates and restarts address it by its name. A new replica
goes to the host of its group with the most free GPUs when it needs some, then the fewest of
this Pod's replicas, then the group's order (placement's rule); an ``_index`` shard grows only on
its own host (its data lives there). Scaling down removes the newest replica of the host holding
the most; a rolling update starts each new replica on the host of the one it replaces. A replica
whose daemon stops answering for the Flow's ``lost_after`` seconds is taken out (the Gateway
sends its searches again), started again on the rest of the group, and its stale copy removed
once that daemon answers again. An ``_index`` shard whose daemons are all silent is
*missing* (reads are answered by the other shards, naming it: :mod:`jinad_fab.runtime.shards`)
until one answers again.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import JinadFabError, PeaStartError
from ..runtime.child import ChildProcess, stop_all
from ..runtime.curve import CurveKeys
from ..runtime.pod import routing
from ..runtime.sockets import connect_host, ctrl_request, make_context

log = logging.getLogger("jinad_fab.flow")

_NOT_FOR_A_SLOT = ("spread", "fallback_hosts", "token", "parallel", "replicas", "shards", "polling", "gpus",
                   "port_expose")


class _Slot:
    """One replica of a spread Pod: a remote Pod of one Pea on ``target``'s daemon."""

    __slots__ = ("sid", "shard", "target", "gpu_ids", "pod", "label")

    def __init__(self, sid: str, shard: int, target: str, gpu_ids: list[int], pod: Any, label: str):
        self.sid, self.shard, self.target, self.gpu_ids, self.pod, self.label = sid, shard, target, gpu_ids, pod, label


class SpreadPod:
    """A Pod whose replicas and shards run on several daemons; the surface of a remote Pod."""

    processes: list

    def __init__(self, flow: Any, spec: dict[str, Any], *, num_parts: int, sessions: dict, bind_host: str,
                 curve: CurveKeys | None = None):
        from . import remote_pods

        self._remote = remote_pods
        self.flow = flow
        self.name: str = spec["name"]
        self.spec = spec
        self.curve = curve
        self.num_parts = num_parts
        self.sessions = sessions
        self.bind_host = bind_host
        spread = spec["spread"]
        self.shards = int(spec.get("shards") or 1)
        self.per_pea_gpus = _gpu_count(spec.get("gpus"))
        self.keeps_data = str(spec.get("uses") or "").strip() == "_index"
        parts = list(spread["parts"])
        self.group: list[str] = [h["host"] for h in spread.get("hosts") or []] or \
            list(dict.fromkeys(p["host"] for p in parts))
        # free GPU ids per daemon, shared by the Flow's spread Pods (placement wrote the same ones in each)
        free = flow.__dict__.setdefault("_spread_free_gpus", {})
        for h in spread.get("hosts") or []:
            free.setdefault(h["host"], sorted(h.get("free_gpu_ids") or []))
        self.free = free
        self.shard_host: dict[int, str] = {}
        self.slots: list[list[_Slot]] = [[] for _ in range(self.shards)]
        self.draining: set[str] = set()
        self.lost: dict[str, dict] = {}  # daemon label -> what was lost there
        self.lost_targets: set[str] = set()
        self._telling: set[str] = set()  # shard sets the Gateway is being told about (missing or back)
        self._replacing: collections.deque[str] = collections.deque()  # hosts a rolling update refills
        self._next = 0
        self._lock = threading.RLock()
        self._ctx = None
        self.out_targets: list | None = None
        self.head: ChildProcess | None = None
        self.processes = []
        self.info: dict[str, Any] = {}
        for part in parts:
            shard = int(part.get("shard") or 0)
            self.shard_host.setdefault(shard, part["host"])
            ids = list(part.get("gpu_ids") or [])
            g = self.per_pea_gpus
            for r in range(int(part.get("replicas") or 1)):
                self.slots[shard].append(self._slot(shard, part["host"], ids[r * g:(r + 1) * g] if g else []))
        if self.shards > 1:
            head_args = {"name": f"{self.name}/head", "pod": self.name, "host": bind_host, "num_parts": num_parts,
                         "port_in": 0, "upstream": [n for n in spec.get("needs") or [] if n != "gateway"],
                         "route": {"polling": routing(spec.get("polling"))}}
            if curve is not None:
                head_args["curve"] = curve.to_dict()
            self.head = ChildProcess("pea", head_args, label=head_args["name"], die_with_parent=True,
                                     log_json=bool(flow.args.get("log_json")), fork=flow._fork)
            self.processes = [self.head]

    # ---- the surface a Flow uses for its Pods ----
    @property
    def args(self) -> dict[str, Any]:
        return self.spec

    @property
    def out_parts(self) -> int:
        return self.shards

    @property
    def live(self) -> bool:
        return True

    @property
    def session(self) -> Any:
        """Where its replicas run, for messages (a spread Pod has no one daemon)."""
        labels = sorted({s.pod.session.label for row in self.slots for s in row})
        return types.SimpleNamespace(label=", ".join(labels), workspace_id=None)

    @property
    def pod_id(self) -> str | None:
        first = next((s for row in self.slots for s in row), None)
        return first.pod.pod_id if first else None

    def set_name(self, shard: int) -> str:
        return self.name if self.shards == 1 else f"{self.name}/shard-{shard}"

    def _slot(self, shard: int, target: str, gpu_ids: list[int]) -> _Slot:
        sid = str(self._next)
        self._next += 1
        slot_spec = {k: v for k, v in self.spec.items() if k not in _NOT_FOR_A_SLOT}
        address = self._remote.daemon_address(target, self.spec.get("port_expose"))
        token = self.flow._daemon_tokens.get(address.netloc)
        if not token and target == self.spec.get("host"):
            token = self.spec.get("token")
        slot_spec.update(host=target, parallel=1, shards=1, token=token or self.flow.args.get("token"))
        if self.spec.get("port_expose"):
            slot_spec["port_expose"] = self.spec["port_expose"]
        if self.shards > 1:
            slot_spec["shard_of"] = [shard, self.shards]
        if gpu_ids:
            slot_spec["gpus"] = list(gpu_ids)  # these devices of its host, as placement handed them out
        elif self.per_pea_gpus:
            slot_spec["gpus"] = self.per_pea_gpus
        if not self.keeps_data and len(self.group) > 1:
            slot_spec["fallback_hosts"] = [h for h in self.group if h != target]  # gets it a lease
        pod = self.flow._remote_pod(slot_spec, 1 if self.head is not None or self.shards > 1 else self.num_parts,
                                    self.sessions, self.curve)
        # a slot is one Pea served in its Pod's own process: the spread Pod adds and removes whole
        # slots, and a slot whose Pea exits is a Pod its daemon reports gone (seen by `dead()`)
        pod.args.pop("changeable", None)
        label = f"{self.set_name(shard)}/replica-{sid}"
        return _Slot(sid, shard, target, list(gpu_ids), pod, label)

    def _all(self) -> list[_Slot]:
        return [s for row in self.slots for s in row]

    def start_local(self) -> None:
        """Start the head here (from the Flow's main thread: a child dies with the thread that started it)."""
        if self.head is not None:
            self.head.start()

    def start(self) -> None:
        slots = self._all()
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(slots)))) as pool:
            futures = [pool.submit(s.pod.start) for s in slots]
            errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        if self.head is not None:
            self.head.wait_ready(time.monotonic() + float(self.spec.get("timeout_ready")
                                                          or self.flow.args["timeout_ready"]))
        self.flow._sessions = list(self.sessions.values())

    def wait_ready(self, deadline: float) -> None:
        pass

    def _head_address(self, key: str = "port_in") -> str:
        assert self.head is not None
        return f"tcp://{connect_host(self.bind_host)}:{self.head.info[key]}"

    def _set_target(self, shard: int) -> dict:
        return {"set": self.set_name(shard),
                "replicas": {s.sid: s.pod.in_addresses[0] for s in self.slots[shard]}}

    @property
    def in_target(self) -> list[str] | dict:
        if self.head is not None:
            return [self._head_address()]
        return self._set_target(0)

    @property
    def in_addresses(self) -> list[str]:
        if self.head is not None:
            return [self._head_address()]
        return [s.pod.in_addresses[0] for s in self.slots[0]]

    def _removal_order(self, row: list[_Slot]) -> list[_Slot]:
        """The shard's replicas, the one a scale-down removes first last: the newest on the host
        holding the most of them."""
        count = collections.Counter(s.target for s in row)
        rank = {t: i for i, t in enumerate(self.group)}
        last = max(row, key=lambda s: (count[s.target], rank.get(s.target, len(rank)), int(s.sid)), default=None)
        return [s for s in row if s is not last] + ([last] if last is not None else [])

    def members(self) -> dict[str, dict]:
        return {self.set_name(shard): {"pod": self.name, "replicas": [s.sid for s in self._removal_order(row)
                                                                      if s.sid not in self.draining]}
                for shard, row in enumerate(self.slots)}

    def plan_sets(self) -> dict[str, dict]:
        """What the Gateway plans requests onto: the shards' replica sets (its head runs in the Flow)."""
        return self.members()

    def idempotent(self) -> list[str]:
        """Endpoints its Executors mark idempotent, as its replicas reported them."""
        return sorted({e for s in self._all() for e in s.pod.idempotent()})

    def labels(self) -> dict[str, dict[str, str]]:
        return {self.set_name(shard): {s.sid: s.label for s in row} for shard, row in enumerate(self.slots)}

    def connect(self, targets: list, timeout: float = 10.0) -> None:
        self.out_targets = targets
        for s in self._all():
            s.pod.connect(targets, timeout)
        self.connect_head(timeout)

    def connect_head(self, timeout: float = 10.0) -> None:
        if self.head is None:
            return
        if self._ctx is None:
            self._ctx = make_context(self.curve)
        reply = ctrl_request(self._ctx, self._head_address("port_ctrl"),
                             {"cmd": "connect", "targets": [self._set_target(s) for s in range(self.shards)]}, timeout)
        if not reply.get("ok"):
            raise PeaStartError(self.head.label, f"refused to connect: {reply.get('error')}")

    # ---- the control commands of a Pod host, answered here (see jinad_fab.runtime.pod_host) ----
    def ctrl(self, cmd: dict, timeout: float = 10.0) -> dict:
        with self._lock:
            kind = cmd.get("cmd")
            if kind == "add_replica":
                if cmd.get("args"):
                    self.spec.update(cmd["args"])  # this replica and every later one (a rolling update)
                    # a rolling update replaces the replicas in the order members() lists them: each
                    # new one goes to the host of the one it replaces, so the Pod keeps its spread
                    self._replacing = collections.deque(
                        s.target for row in self.slots for s in self._removal_order(row) if s.sid not in self.draining)
                return {"ok": True, "replica": self._add(int(cmd.get("shard") or 0))}
            if kind == "drain":
                self.draining.add(self._find(cmd["label"]).sid)
            elif kind == "remove_replica":
                self._remove(self._find(cmd["label"]))
            elif kind != "status":
                raise PeaStartError(self.name, f"{kind!r} is not a command of a spread Pod")
            return {"ok": True}

    def _find(self, label: str) -> _Slot:
        for s in self._all():
            if s.label == label:
                return s
        raise PeaStartError(self.name, f"no replica {label!r}")

    def _choose(self, shard: int) -> str:
        """Where a new replica of ``shard`` goes (see the module docstring)."""
        if self.keeps_data:
            target = self.shard_host[shard]
            if target in self.lost_targets:
                raise PeaStartError(self.name, f"shard {shard}'s host {target} is lost, and its data lives there")
            candidates = [target]
        else:
            candidates = [t for t in self.group if t not in self.lost_targets]
        need = self.per_pea_gpus
        fitting = [t for t in candidates if len(self.free.get(t, ())) >= need]
        if not fitting:
            free = ", ".join(f"{t}={len(self.free.get(t, ()))}" for t in candidates) or "none answers"
            raise PeaStartError(self.name, f"a new replica needs {need} GPU(s) free on one host of its group "
                                           f"({free})")
        count = collections.Counter(s.target for s in self._all())
        order = {t: i for i, t in enumerate(self.group)}
        return min(fitting, key=lambda t: (-len(self.free.get(t, ())) if need else 0, count[t], order.get(t, 0)))

    def _add(self, shard: int) -> str:
        target = self._replacing.popleft() if self._replacing else None
        if target is None or target in self.lost_targets or len(self.free.get(target, ())) < self.per_pea_gpus:
            target = self._choose(shard)
        ids = self.free.get(target, [])[:self.per_pea_gpus]
        del self.free.get(target, [])[:len(ids)]
        slot = self._slot(shard, target, ids)
        try:
            slot.pod.start()
            if self.out_targets is not None:
                slot.pod.connect(self.out_targets)
        except BaseException:
            self.free.setdefault(target, []).extend(ids)
            self.free[target].sort()
            slot.pod.close(timeout=5)
            raise
        self.slots[shard].append(slot)
        self.connect_head()
        self.flow._sessions = list(self.sessions.values())
        log.info("Pod %r: replica %s started on %s", self.name, slot.label, slot.pod.session.label)
        # a lost host's replicas, started again elsewhere: REPLACED once all of them are
        entry = next((e for e in self.lost.values() if e["state"] == "LOST" and not self.keeps_data), None)
        if entry is not None:
            entry.setdefault("to", []).append(slot.pod.session.label)
            if len(entry["to"]) >= len(entry["replicas"]):
                entry.update(state="REPLACED", took=round(time.time() - entry["since"], 3))
        return slot.label

    def _remove(self, slot: _Slot) -> None:
        if slot in self.slots[slot.shard]:
            self.slots[slot.shard].remove(slot)
        self.connect_head()
        self.draining.discard(slot.sid)
        slot.pod.close(timeout=10)
        if slot.gpu_ids:
            self.free.setdefault(slot.target, []).extend(slot.gpu_ids)
            self.free[slot.target].sort()

    # ---- deaths and lost hosts ----
    def new_deaths(self) -> list[dict]:
        """Replicas that died (their daemon says so) or whose daemon stopped answering for
        ``lost_after`` seconds, taken out; what a Pod host's ``status`` reports as ``deaths``.

        An ``_index`` replica whose daemon stops answering stays in (its data lives there): once no
        replica of its shard answers, the shard is missing (reads answer without it, see
        :mod:`jinad_fab.runtime.shards`), and it answers again when its daemon does."""
        lost_after = float(self.flow.args.get("lost_after") or 10.0)
        out: list[dict] = []
        changed = False
        if not self._lock.acquire(blocking=False):
            return out  # a change is starting or stopping a replica: look again on the next round
        try:
            for shard, row in enumerate(self.slots):
                for slot in list(row):
                    dead = slot.pod.dead()
                    silent = slot.pod.unreachable_for()
                    if self.keeps_data and not dead:
                        self._watch_data(shard, slot, silent >= lost_after)
                        continue
                    lost = not dead and silent >= lost_after
                    if not dead and not lost:
                        continue
                    row.remove(slot)
                    changed = True
                    self.draining.discard(slot.sid)
                    death = {"set": self.set_name(shard), "replica": slot.sid, "label": slot.label,
                             "code": None, "daemon": slot.pod.session.label}
                    if lost:
                        self._lose(slot)
                    else:
                        threading.Thread(target=slot.pod.close, kwargs={"timeout": 5}, daemon=True).start()
                    out.append(death)
            if changed:
                try:
                    self.connect_head(timeout=5)
                except JinadFabError as exc:
                    log.error("Pod %r: could not rewire its head: %s", self.name, exc)
        finally:
            self._lock.release()
        return out

    def _watch_data(self, shard: int, slot: _Slot, silent: bool) -> None:
        """An ``_index`` shard is missing while none of its replicas' daemons answers, back after."""
        set_name = self.set_name(shard)
        label = slot.pod.session.label
        if silent and slot.target not in self.lost_targets:
            self.lost_targets.add(slot.target)
            self.lost.setdefault(label, {"daemon": label, "state": "LOST", "since": time.time(), "replicas": []})
            self.lost[label]["replicas"].append(slot.label)
            log.error("Pod %r: replica %s is LOST: its daemon %s does not answer (its data lives there)",
                      self.name, slot.label, label)
        elif not silent and slot.target in self.lost_targets:
            self.lost_targets.discard(slot.target)
            self.lost.pop(label, None)
            log.warning("Pod %r: replica %s answers again", self.name, slot.label)
        answering = [s for s in self.slots[shard] if s.target not in self.lost_targets]
        missing = set_name in (self.flow._missing.get(self.name) or {})
        if not answering and not missing and set_name not in self._telling:
            self._telling.add(set_name)
            threading.Thread(target=self._tell, args=(set_name, shard, True, f"its host {label} is LOST"),
                             daemon=True).start()
        elif answering and missing and set_name not in self._telling:
            self._telling.add(set_name)
            threading.Thread(target=self._tell, args=(set_name, shard, False, ""), daemon=True).start()

    def _tell(self, set_name: str, shard: int, gone: bool, detail: str) -> None:
        try:
            if gone:
                self.flow._shards_missing(self.name, {set_name: shard}, detail, why="lost")
            else:
                self.flow._shards_back(self.name, [set_name])
        except JinadFabError as exc:
            log.error("Pod %r: could not tell the gateway about %s: %s", self.name, set_name, exc)
        finally:
            self._telling.discard(set_name)

    def _lose(self, slot: _Slot) -> None:
        label = slot.pod.session.label
        self.lost_targets.add(slot.target)
        entry = self.lost.setdefault(label, {"daemon": label, "state": "LOST", "since": time.time(), "replicas": []})
        entry["replicas"].append(slot.label)
        log.error("Pod %r: replica %s is LOST: its daemon %s has not answered for %.0fs", self.name, slot.label,
                  label, float(self.flow.args.get("lost_after") or 10.0))
        # its copy goes once that daemon answers again (nothing runs twice); the workspace is shared
        threading.Thread(target=slot.pod.remove_when_back, args=(self.flow._stopping,), kwargs={"workspace": False},
                         daemon=True, name=f"stale-{slot.label}").start()

    def dead(self) -> list[tuple[str, int | None]]:
        if self.head is not None and self.head.proc is not None and not self.head.alive():
            return [(self.head.label, self.head.returncode())]
        policy = self.spec.get("restart") or self.flow.args.get("restart") or "never"
        if self.shards == 1 and not self.slots[0] and policy != "on-failure":
            return [(f"{self.name} (no replica left)", None)]  # as a Pod host fails with its last replica
        return []

    def unreachable_for(self) -> float:
        return 0.0  # its replicas' daemons are watched one by one (new_deaths)

    def describe_row(self) -> dict[str, Any]:
        """Its row in ``Flow.describe_pods``: the first replica's daemon and id, then every replica's."""
        slots = self._all()
        first = slots[0] if slots else None
        row = {"name": self.name, "daemon": first.pod.session.label if first else None,
               "id": first.pod.pod_id if first else None,
               "workspace_id": first.pod.session.workspace_id if first else None,
               "parts": [{"daemon": s.pod.session.label, "id": s.pod.pod_id, "workspace_id": s.pod.session.workspace_id,
                          "replica": s.label, **({"shard": s.shard} if self.shards > 1 else {})} for s in slots]}
        if self.lost:  # LOST while a lost host's replicas are not all started elsewhere, then REPLACED
            entries = list(self.lost.values())
            row["lost"] = {"state": "LOST" if any(e["state"] == "LOST" for e in entries) else "REPLACED",
                           "daemon": ", ".join(sorted(self.lost)), "since": min(e["since"] for e in entries),
                           "replicas": [r for e in entries for r in e["replicas"]],
                           "to": [t for e in entries for t in e.get("to") or []]}
        return row

    def close(self, timeout: float = 10.0) -> None:
        if self.head is not None:
            stop_all([self.head], timeout)
        slots = self._all()
        if slots:
            with ThreadPoolExecutor(max_workers=min(16, len(slots))) as pool:
                list(pool.map(lambda s: s.pod.close(timeout), slots))
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "hosts": sorted({s.pod.session.label for s in self._all()}),
                "replicas": {k: list(v.values()) for k, v in self.labels().items()}}


def _gpu_count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0

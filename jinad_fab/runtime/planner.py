"""The request planning a Flow's entry does, apart from its sockets: shared by the Gateway process
and by the in-process path of a Flow's own client (:mod:`.direct`).

Every request is *planned*: for each replica set of the Flow (the replicas of a Pod, or of one
shard) the planner picks the least loaded member and writes the choice into the request's header;
senders on the way follow it (:mod:`.targets`). So the planner knows which replica holds which
request: when the Flow reports a dead replica (``replica_died``), nothing more is planned onto
it, its read-only requests (``/search`` and endpoints an Executor marks idempotent) are sent once
more to a survivor, and the others fail with PodDied naming the Pod. ``members`` changes a set
(scaling, a rolling update, a restart); a request finding a set empty waits for a member (a restart)
up to ``park_timeout``. When the Flow reports a dead Pod (``pod_failed``), every request in
flight and every new one is answered at once with an error naming that Pod: callers never hang on
a dead Pea. When it reports a shard gone for good (``shards``: no replica left and none
coming, or its host LOST), reads are answered by the other shards with ``missing_shards`` in their
header and writes that need it fail with PodDied naming it (:mod:`.shards`).

A subclass says where answers go (:meth:`Planner._answer`) and which requests wait for one
(:meth:`Planner._waiting`); requests leave through ``roots`` (a :class:`~.targets.Targets`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors import JinadFabError
from ..wire import Message
from .merge import merge_parts
from .shards import HEADER as MISSING
from .shards import MissingShards, parts_expected
from .targets import Targets

log = logging.getLogger("jinad_fab.gateway")


class _Flight:
    """One request between the entry and its answer: what to send again if its replica dies."""

    __slots__ = ("rid", "cur", "header", "body", "plan", "tries", "since", "missing", "parts")

    def __init__(self, rid: str, header: dict, body: list):
        self.rid = rid  # the client's request id
        self.cur = rid  # the id of the attempt in flight (a retry has its own, so late parts are told apart)
        self.header = header
        self.body = body
        self.plan: dict[str, str] = {}
        self.tries = 0
        self.since = 0.0
        self.missing: list[str] = []  # shards this attempt goes without (named in its answer's header)
        self.parts = 1  # how many parts its answer comes in


class Planner:
    """Replica sets, loads, requests in flight, parked requests and missing shards of one entry."""

    def __init__(self, roots: Targets, num_parts: int = 1, upstream: list[str] | None = None,
                 park_timeout: float = 30.0):
        self.roots = roots
        self.num_parts = int(num_parts or 1)
        self.upstream = list(upstream or [])
        self.wired = False
        self.parts: dict[str, list[Message]] = {}
        self.failed: dict | None = None
        # replica sets of the Flow: set name -> {"pod": Pod name, "members": [replica ids]}; every
        # request is planned onto one member of each, so a dead replica's requests are known
        self.sets: dict[str, dict[str, Any]] = {}
        self.load: dict[str, dict[str, int]] = {}
        self.flights: dict[str, _Flight] = {}
        self.parked: list[_Flight] = []  # waiting for a replica of an empty set (one being restarted)
        self.park_timeout = float(park_timeout or 30.0)
        self.retryable = {"/search"}
        self.missing = MissingShards()
        self._turn = 0
        self.extra_plan: dict[str, str] = {}  # written into every plan (a DirectPath names itself)
        self._fixed: dict[str, str] | None = None  # the one plan there is while every set has one member
        self._fixed_loads: list[tuple[dict[str, int], str]] = []  # its members' load counters
        self._held: list[tuple[list, dict]] | None = None  # requests planned, not sent yet (held())

    # ---- what a subclass provides ----
    def _answer(self, rid: str, msg: Message) -> None:
        raise NotImplementedError

    def _waiting(self) -> list[str]:
        """The request ids that wait for an answer (failed all at once when a Pod dies)."""
        raise NotImplementedError

    # ---- control (the commands a Flow sends its entry) ----
    def handlers(self) -> dict:
        return {"connect": lambda cmd: self.connect(cmd["targets"]), "pod_failed": self._pod_failed,
                "status": self._status, "members": self._members, "replica_died": self._replica_died,
                "shards": self._shards}

    def connect(self, targets: list) -> None:
        self.roots.update(targets)
        self.wired = True

    def _pod_failed(self, cmd: dict) -> dict:
        self.failed = {"pod": cmd.get("pod", "?"), "type": "PodDied", "msg": cmd.get("detail", "")}
        pending = self._waiting()
        self.flights.clear()
        self.parked.clear()
        self.parts.clear()
        for loads in self.load.values():
            for k in loads:
                loads[k] = 0
        for rid in pending:
            self._fail(rid, self.failed)
        return {"failed": len(pending)}

    def _status(self, cmd: dict) -> dict:
        return {"pending": len(self._waiting()), "failed": self.failed,
                "inflight": {name: dict(loads) for name, loads in self.load.items()},
                "members": {name: list(st["members"]) for name, st in self.sets.items()},
                "parked": len(self.parked), "missing_shards": self.missing.view()}

    def _members(self, cmd: dict) -> dict:
        """Replace the members of the named replica sets (what new requests are planned onto)."""
        self._changed()
        for name, st in (cmd.get("sets") or {}).items():
            members = [str(m) for m in st.get("replicas") or []]
            self.sets[name] = {"pod": st.get("pod") or name.split("/", 1)[0], "members": members}
            loads = self.load.setdefault(name, {})
            for m in members:
                loads.setdefault(m, 0)
            for m in [m for m, n in loads.items() if m not in members and n == 0]:
                del loads[m]  # a replica that left and holds nothing more
            if members and name in self.missing:
                self.missing.back([name], why="dead")  # a shard restarted: it answers again
        for name in cmd.get("drop") or ():
            self.sets.pop(name, None)
            self.load.pop(name, None)
        if cmd.get("idempotent") is not None:
            self.retryable = {"/search", *cmd["idempotent"]}
        if self.parked:
            parked, self.parked = self.parked, []
            for fl in parked:
                self._send(fl)
        return {"parked": len(self.parked)}

    def _replica_died(self, cmd: dict) -> dict:
        """A replica died: plan nothing more onto it; send its read-only requests again, fail the rest."""
        name, replica = cmd["set"], str(cmd["replica"])
        self._changed()
        st = self.sets.get(name)
        pod = st["pod"] if st else name.split("/", 1)[0]
        if st is not None and replica in st["members"]:
            st["members"].remove(replica)
        retried = failed = 0
        for fl in [fl for fl in self.flights.values() if fl.plan.get(name) == replica]:
            self._release(fl)
            if fl.tries == 0 and fl.header.get("ep") in self.retryable:
                retried += 1
                fl.tries += 1
                self._send(fl)
            else:
                failed += 1
                self._fail(fl.rid, {"pod": pod, "type": "PodDied",
                                    "msg": f"{cmd.get('detail') or 'a replica died'} while it held the request"})
        self.load.get(name, {}).pop(replica, None)
        return {"retried": retried, "failed": failed}

    def _shards(self, cmd: dict) -> dict:
        """Shards gone for good (``missing``: set name -> ``{pod, shard, shards, polling, detail, why}``)
        or back (``back``: set names). Requests an attempt planned onto a newly missing shard are
        sent again without it (reads) or failed with PodDied naming it (writes); parked requests go."""
        self._changed()
        added = self.missing.mark(cmd.get("missing") or {})
        back = self.missing.back(cmd.get("back") or ())
        retried = failed = 0
        if added:
            gone = set(added)
            for fl in [fl for fl in self.flights.values() if gone & set(fl.plan)]:
                self._release(fl)
                if fl.header.get("ep") in self.retryable:
                    retried += 1
                    fl.tries += 1
                    self._send(fl)
                else:
                    failed += 1
                    names = sorted(gone & set(fl.plan))
                    self._fail(fl.rid, {"pod": self.missing.sets[names[0]]["pod"], "type": "PodDied",
                                        "shards": names, "msg": f"shard {', '.join(names)} went missing while it "
                                                                f"held the request: {self.missing.sets[names[0]]['detail']}"})
        if added or back:
            log.warning("missing shards now: %s", ", ".join(sorted(self.missing.sets)) or "none")
        if self.parked:
            parked, self.parked = self.parked, []
            for fl in parked:
                self._send(fl)
        return {"retried": retried, "failed": failed, "missing": self.missing.view()}

    # ---- requests ----
    def _dispatch(self, header: dict, body: list, rid: str) -> None:
        if self.failed is not None:
            self._fail(rid, self.failed)
            return
        if not self.wired:
            self._fail(rid, {"pod": "gateway", "type": "NotReady", "msg": "the Flow is not wired yet"})
            return
        self._send(_Flight(rid, header, body))

    def _changed(self) -> None:
        """The sets, their members or the missing shards changed: plans are made again."""
        self._fixed = None

    def _plan(self) -> dict[str, str] | None:
        """One member of every replica set, the least loaded (ties taken in turn); None when a set
        has no member at all (a shard known to be missing is left out instead). Plans are shared,
        never changed: while every set has one member, every request gets the same one."""
        fixed = self._fixed
        if fixed is not None:
            return fixed
        plan = dict(self.extra_plan)
        self._turn += 1
        single = True
        for name, st in self.sets.items():
            if name in self.missing:
                continue
            members = st["members"]
            n = len(members)
            if n == 1:
                plan[name] = members[0]
                continue
            single = False
            if n == 0:
                return None
            loads = self.load[name]
            best, low = None, None
            for k in range(n):
                m = members[(self._turn + k) % n]
                if low is None or loads[m] < low:
                    best, low = m, loads[m]
            plan[name] = best
        if single:
            self._fixed = plan
            self._fixed_loads = [(self.load[name], m) for name, m in plan.items() if name in self.load]
        return plan

    def _send(self, fl: _Flight) -> None:
        fixed = self._fixed
        if fixed is not None and not fl.tries and not self.missing.sets:
            # the common case (every set has one member, every shard there, a first attempt): the
            # shared plan, its load counters found once (see _plan), the request's own id
            fl.plan = fixed
            fl.parts = self.num_parts
            self.flights[fl.rid] = fl
            for loads, m in self._fixed_loads:
                loads[m] += 1
            header = dict(fl.header, plan=fixed) if fixed else fl.header
            self._emit([orjson.dumps(header), *fl.body], header)
            return
        missing: list[str] = []
        if self.missing:
            missing, err = self.missing.check(fl.header, fl.body, self.retryable)
            if err is not None:
                self._fail(fl.rid, err)
                return
        plan = self._plan()
        if plan is None:
            fl.since = time.monotonic()
            self.parked.append(fl)
            return
        fl.cur = fl.rid if not fl.tries else f"{fl.rid}~{fl.tries}"
        fl.plan = plan
        fl.missing = missing
        fl.parts = parts_expected(self.num_parts, self.upstream, {MISSING: missing}) if missing else self.num_parts
        self.flights[fl.cur] = fl
        loads = self.load
        for name, m in plan.items():
            got = loads.get(name)
            if got is not None:
                got[m] += 1
        if missing:
            header = dict(fl.header, rid=fl.cur, plan=plan, **{MISSING: missing})
        else:
            header = dict(fl.header, rid=fl.cur, plan=plan) if plan or fl.tries else fl.header
        self._emit([orjson.dumps(header), *fl.body], header)

    def _emit(self, frames: list, header: dict) -> None:
        """Send one planned request, or hold it while a burst is being planned (:meth:`held`)."""
        held = self._held
        if held is None:
            self.roots.send_all(frames, header)
        else:
            held.append((frames, header))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """``with planner.held():`` requests planned inside leave together at the end (even if the
        block fails: they are in flight): one burst of sends on the sockets, which a socket's I/O
        thread takes in one wake-up (a send made after it went back to sleep costs a system call
        that wakes it)."""
        if self._held is not None:
            raise RuntimeError("bursts do not nest")
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            send_all = self.roots.send_all
            for frames, header in held:
                send_all(frames, header)

    def _release(self, fl: _Flight) -> None:
        """Forget an attempt: its replicas hold it no more, and parts of it that come late are dropped."""
        if self.flights.pop(fl.cur, None) is None:
            return
        if self.parts:
            self.parts.pop(fl.cur, None)
        if fl.plan is self._fixed:  # nothing changed since it was planned: the counters it bumped
            for loads, m in self._fixed_loads:
                loads[m] -= 1
            return
        for name, m in fl.plan.items():
            loads = self.load.get(name)
            if loads is not None and m in loads:
                loads[m] -= 1

    def _expire_parked(self) -> None:
        now = time.monotonic()
        while self.parked and now - self.parked[0].since > self.park_timeout:
            fl = self.parked.pop(0)
            empty = [st["pod"] for name, st in self.sets.items() if not st["members"] and name not in self.missing]
            self._fail(fl.rid, {"pod": empty[0] if empty else "?", "type": "PodDied",
                                "msg": f"no replica came back within {self.park_timeout:g}s"})

    def _on_result(self, frames: list) -> None:
        try:
            msg = Message.from_frames(frames)
        except JinadFabError as exc:
            log.error("dropped a malformed answer: %s", exc)
            return
        rid = msg.request_id
        fl = self.flights.get(rid)
        if fl is None:
            return  # an attempt given up on (its replica died and it was sent again, or failed)
        if self.num_parts > 1:
            got = self.parts.setdefault(rid, [])
            got.append(msg)
            if len(got) < fl.parts:
                return
            del self.parts[rid]
            msg = merge_parts(got, self.upstream)
        self._release(fl)
        msg.header["rid"] = fl.rid
        msg.header.pop("plan", None)
        if fl.missing:
            msg.header[MISSING] = fl.missing  # the answer says which shards it lacks, never silently
        else:
            msg.header.pop(MISSING, None)
        self._answer(fl.rid, msg)

    def _fail(self, rid: str, err: dict) -> None:
        self.parts.pop(rid, None)
        header = {"rid": rid, "err": err}
        self._answer(rid, Message(header))

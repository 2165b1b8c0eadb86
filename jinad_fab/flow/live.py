"""Changing a running Flow without dropping a request: scale, rolling update, dump, restarts.

Every request is planned by the Gateway onto one replica of each replica set (see
:mod:`jinad_fab.runtime.gateway`), so a replica can come and go in order:

* **adding** one: start it, wait until it is ready, wire its output like its siblings', point the
  senders upstream of it at it (sockets of the others are kept), then tell the Gateway it may plan
  onto it;
* **removing** one: tell the Gateway to plan onto it no more, wait until the Gateway holds no
  request planned onto it (every one it took has been answered), unwire it upstream, stop it;
* a **rolling update** adds a replica with the new arguments, then removes an old one, one at a
  time: the Pod never has fewer replicas than it started with, and one request only ever meets
  one replica of a set, so it never sees two versions;
* a replica that **dies** is reported to the Gateway at once (it retries the read-only requests
  the replica held and fails the others with PodDied), unwired, and started again when the Pod's
  restart policy says so, with exponential backoff and a cap per window;
* a shard **head** that dies is one too: the Gateway plans every request onto it as a set of one,
  so it retries or fails the requests that went through it and holds new ones until a new head
  (a new input port) is wired to the shards and to the senders upstream (a remote Pod's host
  reports its head's death and starts a new one when told: ``restart_head``).

One change runs at a time per Flow; asking for another meanwhile raises ChangeInProgress (409 on
the daemon). Restarts queue behind a running change instead.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from ..errors import BadConfig, ChangeInProgress, PeaStartError, RuntimeFailure
from ..runtime.child import ChildProcess, stop_all
from ..runtime.pod import Pod

log = logging.getLogger("jinad_fab.flow")

Progress = Callable[[dict], None]
"""Called once per step of a change: ``{"pod", "step": "started"|"stopped"|..., "replica", ...}``."""

RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 30.0
DRAIN_TIMEOUT = 120.0


class LiveChanges:
    """The live-change side of one running Flow (created by ``Flow.start``)."""

    def __init__(self, flow: Any):
        self.flow = flow
        self._lock = threading.RLock()  # one change of the Flow's wiring at a time (restarts included)
        self._busy_guard = threading.Lock()
        self.busy: str | None = None  # the change asked through the API that runs now
        self.restarts: dict[str, int] = collections.Counter()
        self._recent: dict[str, collections.deque] = {}
        # dead processes already seen (weak: a later process must never be taken for a forgotten one)
        self._seen_dead: weakref.WeakSet[ChildProcess] = weakref.WeakSet()
        self.given_up: dict[str, str] = {}
        # every replica is started from this one thread: a child's parent-death signal fires when the
        # thread that started it ends, and restarts and API calls come from short-lived threads
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow-spawner")

    def spawn(self, p: ChildProcess) -> None:
        self._spawner.submit(p.start).result()

    def shutdown(self) -> None:
        self._spawner.shutdown(wait=False)

    # ---- the API-level lock: 409 while another change runs ----
    @contextmanager
    def change(self, what: str) -> Iterator[None]:
        with self._busy_guard:
            if self.busy is not None:
                raise ChangeInProgress(what, self.busy)
            self.busy = what
        try:
            with self._lock:
                yield
        finally:
            with self._busy_guard:
                self.busy = None

    # ---- helpers ----
    def _pod(self, name: str) -> Any:
        pod = self.flow._running.get(name)
        if pod is None:
            known = ", ".join(self.flow._running) or "none"
            raise BadConfig(f"the Flow has no Pod named {name!r} (its Pods: {known})")
        return pod

    def gateway(self, cmd: dict, timeout: float = 10.0) -> dict:
        return self.flow._gateway_cmd(cmd, timeout)

    def publish(self, pod: Pod) -> None:
        """Tell the Gateway which replicas of the Pod's sets it may plan onto (and which endpoints it
        may retry: a rolling update may bring an Executor that marks others). A missing shard that
        has a replica again answers again: the Gateway drops it from the missing ones."""
        sets = pod.plan_sets()
        self.gateway({"cmd": "members", "sets": sets, "idempotent": self.flow._idempotent()})
        missing = self.flow._missing.get(pod.name)
        if missing:
            for name, st in sets.items():
                if st["replicas"] and missing.get(name, {}).get("state") == "DEAD":
                    del missing[name]

    def rewire_senders(self, name: str, head_moved: bool = False) -> None:
        """Point everything that sends into Pod ``name`` at its current replicas (or at its head, when
        a new one took the place of one that exited: ``head_moved``)."""
        pod = self._pod(name)
        if not isinstance(pod.in_target, dict):  # a head takes the input: it follows its shards itself
            if isinstance(pod, Pod) and pod.head is not None:
                pod.connect_head()
            if not head_moved:
                return
        for up in self.flow._pods[name]["needs"]:
            if up == "gateway":
                self.gateway({"cmd": "connect", "targets": self.flow._roots()})
            else:
                self.flow._running[up].connect(self.flow._targets_of(up))

    def _add(self, name: str, pod: Pod, shard: int, progress: Progress | None) -> ChildProcess:
        timeout = float(pod.args.get("timeout_ready") or self.flow.args["timeout_ready"])
        p = pod.add_replica(shard, time.monotonic() + timeout, spawn=self.spawn)
        self.rewire_senders(name)
        self.publish(pod)
        _say(progress, {"pod": name, "step": "started", "replica": p.label, "pid": p.pid})
        return p

    def _remove(self, name: str, pod: Pod, p: ChildProcess, progress: Progress | None) -> None:
        shard = pod.shard_of_pea(p)
        set_name, rid = pod.set_name(shard or 0), str(p.args["replica_id"])
        pod.draining.add(p.label)
        self.publish(pod)
        _say(progress, {"pod": name, "step": "draining", "replica": p.label})
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while p.alive():
            held = self.gateway({"cmd": "status"}).get("inflight", {}).get(set_name, {}).get(rid, 0)
            if held <= 0:
                break
            if time.monotonic() > deadline:
                log.warning("%s still holds %d requests after %.0fs; stopping it anyway", p.label, held,
                            DRAIN_TIMEOUT)
                break
            time.sleep(0.01)
        pod.peas[shard].remove(p)
        self.rewire_senders(name)
        stop_all([p], timeout=10)
        pod.draining.discard(p.label)
        pod.parallel = max(1, max(len(row) for row in pod.peas))
        self.publish(pod)  # forget it in the Gateway's bookkeeping too
        _say(progress, {"pod": name, "step": "stopped", "replica": p.label})

    # ---- scale ----
    def scale(self, name: str, replicas: int, progress: Progress | None = None) -> dict:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= 64:
            raise BadConfig(f"replicas must be an integer from 1 to 64, got {replicas!r}")
        with self.change(f"scale Pod {name!r}"):
            pod = self._pod(name)
            if not isinstance(pod, Pod):
                return self._scale_remote(name, pod, replicas, progress)
            before = [len(row) for row in pod.peas]
            for shard in range(len(pod.peas)):
                while len(pod.peas[shard]) < replicas:
                    self._add(name, pod, shard, progress)
                while len(pod.peas[shard]) > replicas:
                    # the newest go first: the oldest have warmed up
                    self._remove(name, pod, pod.peas[shard][-1], progress)
            pod.parallel = replicas
            self.flow._pods[name]["parallel"] = replicas
            return {"pod": name, "kind": "scale", "before": max(before), "replicas": replicas}

    # ---- rolling update ----
    def rolling_update(self, name: str, *, uses: Any = None, uses_with: dict | None = None,
                       dump_path: str | None = None, progress: Progress | None = None) -> dict:
        if uses is None and uses_with is None and dump_path is None:
            raise BadConfig("rolling_update needs at least one of uses, uses_with, dump_path")
        if uses_with is not None and not isinstance(uses_with, dict):
            raise BadConfig(f"uses_with must be a mapping, got {type(uses_with).__name__}")
        if dump_path is not None and (not isinstance(dump_path, str) or not dump_path):
            raise BadConfig(f"dump_path must be a directory path, got {dump_path!r}")
        with self.change(f"rolling update of Pod {name!r}"):
            pod = self._pod(name)
            changes: dict[str, Any] = {}
            if uses is not None:
                from .builder import _uses_spec

                uses, mods = _uses_spec(uses)
                changes["uses"] = uses
                if mods:
                    changes["py_modules"] = list(pod.args.get("py_modules") or []) + mods
            if uses_with is not None:
                changes["uses_with"] = dict(uses_with)
            if dump_path is not None:
                # the Pea option dump_path: every new replica loads its shard's part of the dump (_index)
                changes["dump_path"] = os.path.abspath(dump_path)
            if not isinstance(pod, Pod):
                return self._update_remote(name, pod, changes, progress)
            old_args = dict(pod.args)
            pod.args.update(changes)
            replaced = 0
            try:
                for shard in range(len(pod.peas)):
                    for old in list(pod.peas[shard]):
                        self._add(name, pod, shard, progress)  # the new one is ready before the old one leaves
                        self._remove(name, pod, old, progress)
                        replaced += 1
            except (PeaStartError, RuntimeFailure):
                if replaced == 0:
                    pod.args.clear()
                    pod.args.update(old_args)  # nothing changed: the Pod keeps its arguments
                raise
            self.flow._pods[name].update(changes)
            return {"pod": name, "kind": "rolling_update", "replaced": replaced}

    # ---- dump ----
    def dump(self, name: str, path: str, timeout: float = 600.0) -> dict:
        if not isinstance(path, str) or not path:
            raise BadConfig(f"dump needs a directory path, got {path!r}")
        with self.change(f"dump of Pod {name!r}"):
            self._pod(name)
            path = os.path.abspath(path)
            answer = self.flow._send_only(name, "/dump", {"path": path}, timeout)
            return {"pod": name, "kind": "dump", "path": path, "answer": answer}

    # ---- a Pod on a jinad host: the same steps, each one a command to its Pod host ----
    def _remote_shards(self, pod: Any) -> list[str]:
        if not pod.live:
            raise BadConfig(f"Pod {pod.name!r} on {pod.session.label} runs as one Pea: give it parallel >= 2 "
                            "(or shards) to change it while it runs")
        return list(pod.members())

    def _r_add(self, name: str, pod: Any, shard: int, progress: Progress | None, args: dict | None = None) -> None:
        timeout = float(pod.args.get("timeout_ready") or self.flow.args["timeout_ready"]) + 10
        reply = pod.ctrl({"cmd": "add_replica", "shard": shard, **({"args": args} if args else {})}, timeout)
        self.rewire_senders(name)
        self.publish(pod)
        _say(progress, {"pod": name, "step": "started", "replica": reply.get("replica")})

    def _r_remove(self, name: str, pod: Any, set_name: str, rid: str, progress: Progress | None) -> None:
        label = pod.labels()[set_name][rid]
        pod.ctrl({"cmd": "drain", "label": label})
        self.publish(pod)
        _say(progress, {"pod": name, "step": "draining", "replica": label})
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while self.gateway({"cmd": "status"}).get("inflight", {}).get(set_name, {}).get(rid, 0) > 0:
            if time.monotonic() > deadline:
                log.warning("%s still holds requests after %.0fs; stopping it anyway", label, DRAIN_TIMEOUT)
                break
            time.sleep(0.01)
        pod.ctrl({"cmd": "remove_replica", "label": label}, timeout=20)
        self.rewire_senders(name)
        self.publish(pod)
        _say(progress, {"pod": name, "step": "stopped", "replica": label})

    def _scale_remote(self, name: str, pod: Any, replicas: int, progress: Progress | None) -> dict:
        sets = self._remote_shards(pod)
        before = max(len(m["replicas"]) for m in pod.members().values())
        for shard, set_name in enumerate(sets):
            while len(pod.members()[set_name]["replicas"]) < replicas:
                self._r_add(name, pod, shard, progress)
            while len(pod.members()[set_name]["replicas"]) > replicas:
                self._r_remove(name, pod, set_name, pod.members()[set_name]["replicas"][-1], progress)
        self.flow._pods[name]["parallel"] = replicas
        return {"pod": name, "kind": "scale", "before": before, "replicas": replicas}

    def _update_remote(self, name: str, pod: Any, changes: dict, progress: Progress | None) -> dict:
        sets = self._remote_shards(pod)
        if "dump_path" in changes or "uses" in changes:
            # paths name the Flow's machine; on a jinad host they would name the host's own files
            if changes.get("py_modules"):
                raise BadConfig(f"Pod {name!r} runs on {pod.session.label}: give `uses` as a name its workspace knows")
        replaced = 0
        for shard, set_name in enumerate(sets):
            for rid in list(pod.members()[set_name]["replicas"]):
                self._r_add(name, pod, shard, progress, args=changes if replaced == 0 else None)
                self._r_remove(name, pod, set_name, rid, progress)
                replaced += 1
        self.flow._pods[name].update(changes)
        return {"pod": name, "kind": "rolling_update", "replaced": replaced}

    def on_remote_death(self, name: str, pod: Any, death: dict) -> str | None:
        """A replica of a Pod on a jinad host died (its host took it out and reported it)."""
        detail = f"Pea {death.get('label')} on {pod.session.label} exited with code {death.get('code')}"
        log.error("Pod %r: %s", name, detail)
        try:
            self.gateway({"cmd": "replica_died", "set": death["set"], "replica": str(death["replica"]),
                          "pod": name, "detail": detail}, timeout=5)
        except RuntimeFailure as exc:
            return f"{detail}; the gateway did not answer: {exc}"
        if death.get("head"):  # reported only under restart: on-failure (else its host fails the Pod)
            timeout = float(pod.args.get("timeout_ready") or self.flow.args["timeout_ready"]) + 10
            return self._new_head(name, pod, detail, lambda: pod.ctrl({"cmd": "restart_head"}, timeout))
        policy = pod.args.get("restart") or self.flow.args.get("restart") or "never"
        with self._lock:
            pod.ctrl({"cmd": "status"}, timeout=5)
            self.rewire_senders(name)
            self.publish(pod)
            left = (pod.members().get(death["set"]) or {}).get("replicas")
            if policy != "on-failure":
                # its host fails a Pod of one shard when the set has no replica left; a shard goes missing
                if not left and int(pod.args.get("shards") or 1) > 1:
                    return self.flow._shards_missing(name, {death["set"]: _shard_index(death["set"])}, detail)
                return None
            delay = self._restart_delay(name, pod.args)
        if delay is None:
            if not left and int(pod.args.get("shards") or 1) > 1:
                return self.flow._shards_missing(
                    name, {death["set"]: _shard_index(death["set"])}, f"{detail}; not restarted again "
                                                                      f"({self.given_up[name]})")
            return None
        if delay and self.flow._stopping.wait(delay):
            return None
        with self._lock:
            if self.flow._stopping.is_set():
                return None
            sets = list(pod.members())
            try:
                self._r_add(name, pod, sets.index(death["set"]) if death["set"] in sets else 0, None)
            except (PeaStartError, RuntimeFailure) as exc:
                # as for a local Pod: the Pod goes on while the set keeps a replica
                log.error("Pod %r: could not restart a replica: %s", name, exc)
                if not (pod.members().get(death["set"]) or {}).get("replicas"):
                    if int(pod.args.get("shards") or 1) > 1:  # a Pod of several shards goes on without it
                        return self.flow._shards_missing(name, {death["set"]: _shard_index(death["set"])},
                                                         f"{detail}; the restart failed: {exc}")
                    return f"{detail}; the restart failed: {exc}"
                return None
            self.restarts[name] += 1
        return None

    def _restart_delay(self, name: str, args: dict) -> float | None:
        """How long to wait before the next restart of a Pod's replica; None: the cap is reached."""
        limit = int(args.get("restart_limit") or RESTART_LIMIT)
        window = float(args.get("restart_window") or RESTART_WINDOW)
        recent = self._recent.setdefault(name, collections.deque())
        now = time.monotonic()
        while recent and now - recent[0] > window:
            recent.popleft()
        if len(recent) >= limit:
            self.given_up[name] = f"{limit} restarts within {window:g}s"
            return None
        recent.append(now)
        return 0.0 if len(recent) == 1 else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(recent) - 2))

    # ---- restarts ----
    def on_death(self, name: str, pod: Pod, p: ChildProcess) -> str | None:
        """A replica of a local Pod exited. Returns a failure message when the Pod cannot go on."""
        code = p.returncode()
        shard = pod.shard_of_pea(p)
        detail = f"Pea {p.label} exited with code {code}"
        if shard is None:
            return None  # removed by a change meanwhile
        log.error("Pod %r: %s", name, detail)
        try:
            self.gateway({"cmd": "replica_died", "set": pod.set_name(shard), "replica": str(p.args["replica_id"]),
                          "pod": name, "detail": detail}, timeout=5)
        except RuntimeFailure as exc:
            return f"{detail}; the gateway did not answer: {exc}"
        policy = pod.args.get("restart") or self.flow.args.get("restart") or "never"
        with self._lock:
            if p in pod.peas[shard]:
                pod.peas[shard].remove(p)
                self.rewire_senders(name)
            p.wait(1)
            if policy != "on-failure":
                if not pod.peas[shard]:  # a Pod of several shards goes on without this one (issue 16)
                    return self.flow._shards_missing(name, {pod.set_name(shard): shard}, detail)
                return None
            delay = self._restart_delay(name, pod.args)
            if delay is None:
                if not pod.peas[shard]:
                    return self.flow._shards_missing(name, {pod.set_name(shard): shard},
                                                     f"{detail}; not restarted again ({self.given_up[name]})")
                return None
        if delay and self.flow._stopping.wait(delay):
            return None
        with self._lock:
            if self.flow._stopping.is_set():
                return None
            try:
                self._add(name, pod, shard, None)
            except (PeaStartError, RuntimeFailure) as exc:
                log.error("Pod %r: could not restart a replica: %s", name, exc)
                if not pod.peas[shard]:
                    return self.flow._shards_missing(name, {pod.set_name(shard): shard},
                                                     f"{detail}; the restart failed: {exc}")
                return None
            self.restarts[name] += 1
        log.warning("Pod %r: replica restarted (%d restarts so far)", name, self.restarts[name])
        return None

    def on_head_death(self, name: str, pod: Pod, head: ChildProcess) -> str | None:
        """The head of a local Pod exited: the requests that went through it are retried (read-only)
        or failed by the Gateway, which holds the new ones until a new head is started (per the
        Pod's restart policy, like a replica), wired to the shards and to the senders upstream."""
        detail = f"Pea {head.label} exited with code {head.returncode()}"
        if pod.head is not head:
            return None
        log.error("Pod %r: %s", name, detail)
        try:
            self.gateway({"cmd": "replica_died", "set": pod.head_set, "replica": pod.head_id, "pod": name,
                          "detail": detail}, timeout=5)
        except RuntimeFailure as exc:
            return f"{detail}; the gateway did not answer: {exc}"
        policy = pod.args.get("restart") or self.flow.args.get("restart") or "never"
        if policy != "on-failure":
            return detail
        timeout = float(pod.args.get("timeout_ready") or self.flow.args["timeout_ready"])
        return self._new_head(name, pod, detail,
                              lambda: pod.restart_head(time.monotonic() + timeout, spawn=self.spawn))

    def _new_head(self, name: str, pod: Any, detail: str, restart: Callable[[], Any]) -> str | None:
        """Start a head in place of a dead one (``restart``, after the policy's backoff), wire it to
        the senders upstream, then let the Gateway send what it held meanwhile."""
        with self._lock:
            delay = self._restart_delay(name, pod.args)
        if delay is None:
            return f"{detail}; not restarted again ({self.given_up[name]})"
        if delay and self.flow._stopping.wait(delay):
            return None
        with self._lock:
            if self.flow._stopping.is_set():
                return None
            try:
                restart()
                self.rewire_senders(name, head_moved=True)
            except (PeaStartError, RuntimeFailure) as exc:
                return f"{detail}; the restart failed: {exc}"
            self.publish(pod)  # the requests held meanwhile go now, through the new head
            self.restarts[name] += 1
        log.warning("Pod %r: head restarted (%d restarts so far)", name, self.restarts[name])
        return None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"change": self.busy, "pods": {}}
        for name, pod in self.flow._running.items():
            if isinstance(pod, Pod):
                replicas = [len(row) for row in pod.peas]
            elif pod.members():
                replicas = [len(m["replicas"]) for m in pod.members().values()]
            else:
                replicas = [int(self.flow._pods[name].get("parallel") or 1)]
            out["pods"][name] = {"replicas": max(replicas) if replicas else 0,
                                 "restarts": self.restarts.get(name, 0),
                                 **({"given_up": self.given_up[name]} if name in self.given_up else {})}
        return out


def _shard_index(set_name: str) -> int:
    """``idx/shard-1`` -> 1 (a Pod of one shard: 0)."""
    tail = set_name.rsplit("/shard-", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0


def _say(progress: Progress | None, event: dict) -> None:
    log.info("Pod %s: replica %s %s", event["pod"], event.get("replica"), event["step"])
    if progress is not None:
        progress(event)

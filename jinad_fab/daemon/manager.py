"""The daemon's brain: routes call it, it keeps the store and the runtimes in step.

States live in the store; the runtime is asked about the truth (``status``) whenever an object is
read, and by the reconciler in the background, so a process that died is reported as FAILED with
the reason rather than as RUNNING forever. Blocking work (builds, process start/stop) runs in
threads; the event loop only waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..errors import Busy, Conflict, DaemonError, Invalid, JinadFabError, NotFound, StartFailed
from ..executors.loader import CONFINE_ENV
from ..launch import handoff
from ..launch.command import POD_PORTS
from ..schemas import ObjectState, PeaCreate, PodCreate, WorkspaceState, new_id
from . import logs
from . import workspaces as wsfiles
from .runtimes import buildproc
from .runtimes.base import BuildError, LaunchSpec, Runtime, StartError, WorkspaceContext
from .settings import DaemonSettings
from .store import Record, Store

LIVE = (ObjectState.STARTING.value, ObjectState.RUNNING.value, ObjectState.STOPPING.value)
BUILD_ACTIVE = (WorkspaceState.PENDING.value, WorkspaceState.BUILDING.value)
PREPARE_AT_START_S = 15.0  # start-up waits this long at most for the ACTIVE workspaces' zygotes
_ALIVE_EVERY = 0.05  # seconds between checks that an object which is not ready yet still lives


class Manager:
    def __init__(self, settings: DaemonSettings, store: Store, runtimes: dict[str, Runtime]):
        self.settings = settings
        self.store = store
        self.runtimes = runtimes
        self.home = settings.home
        self.dirs = {name: self.home / name for name in ("workspaces", "logs", "run", "tmp", "cache")}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self._builds = concurrent.futures.ThreadPoolExecutor(settings.build_workers, thread_name_prefix="build")
        self._obj_locks: dict[str, asyncio.Lock] = {}
        self._pod_changes: dict[str, str] = {}  # pod id -> the live change running on it
        # flow id -> {peer: digest of the configured token it holds}: in memory only, never a token
        self._handed: dict[str, dict[str, str]] = {}
        self._bg: set[asyncio.Task] = set()
        # builds: one at a time per workspace (its lock), cancelled ones write nothing more, and a
        # queue slot is taken before the upload is staged (counted with the PENDING/BUILDING rows)
        self._build_guard = threading.Lock()
        self._build_locks: dict[str, threading.Lock] = {}
        self._cancelled: set[str] = set()
        self._reserved_slots = 0
        self._closing = False

    # ---- paths and helpers ----------------------------------------------------------------------

    def log_path(self, object_id: str) -> pathlib.Path:
        return self.dirs["logs"] / f"{object_id}.log"

    def status_path(self, object_id: str) -> pathlib.Path:
        return self.dirs["run"] / f"{object_id}.json"

    def ws_dir(self, wid: str) -> pathlib.Path:
        return self.dirs["workspaces"] / wid

    def context(self, rec: Record) -> WorkspaceContext:
        return WorkspaceContext(id=rec.id, root=self.ws_dir(rec.id) / "files", env_dir=self.ws_dir(rec.id) / "env",
                                config=rec.data.get("config", {}), build_info=rec.data.get("build_info", {}))

    def runtime_for(self, rec: Record) -> Runtime:
        try:
            return self.runtimes[rec.runtime]
        except KeyError:
            raise Conflict(f"runtime {rec.runtime!r} is not available on this host") from None

    def get(self, object_id: str, kind: str | None = None) -> Record:
        rec = self.store.get(object_id)
        if rec is None or (kind is not None and rec.kind != kind):
            raise NotFound(f"no {kind or 'object'} with id {object_id}")
        return rec

    def _lock(self, object_id: str) -> asyncio.Lock:
        return self._obj_locks.setdefault(object_id, asyncio.Lock())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def close(self) -> None:
        """Shutdown: builds die with the daemon (a restarted one builds them again), objects live on."""
        with self._build_guard:
            self._closing = True
        for ws in self.store.list(kind="workspace", states=(WorkspaceState.BUILDING.value,)):
            buildproc.kill(ws.handle.get("build"))
        self._builds.shutdown(wait=False, cancel_futures=True)
        for name, rt in self.runtimes.items():
            try:
                rt.close()
            except Exception:  # shutting down: one runtime's trouble must not keep the others open
                logging.getLogger("jinad").exception("closing runtime %s failed", name)

    # ---- workspaces ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _queue_slot(self) -> Iterator[None]:
        """Hold one of the ``max_queued_builds`` places while an upload is staged. Checked and
        taken with no ``await`` in between, so concurrent requests cannot all see a free slot;
        once the workspace's row is PENDING it counts instead, and the place is given back."""
        queued = len(self.store.list(kind="workspace", states=BUILD_ACTIVE)) + self._reserved_slots
        if queued >= self.settings.max_queued_builds:
            raise Busy(f"{queued} builds are already queued; try again later")
        self._reserved_slots += 1
        try:
            yield
        finally:
            self._reserved_slots -= 1

    def _stage(self, parts: list[tuple[str, Any]], extract: bool) -> tuple[pathlib.Path, list[str], dict | None]:
        checked = [(wsfiles.safe_relpath(name), upload.file) for name, upload in parts]
        staging = wsfiles.new_staging(self.dirs["tmp"])
        limits = wsfiles.Limits(self.settings.max_files, self.settings.max_extract_bytes,
                                self.settings.max_extract_ratio)
        try:
            files = wsfiles.stage(checked, staging, limits, extract=extract)
            jinad = staging / ".jinad"
            config = wsfiles.parse_jinad(jinad.read_text(errors="replace")) if jinad.exists() else None
        except BaseException:
            wsfiles.remove_tree(staging)
            raise
        return staging, files, config

    async def create_workspace(self, parts: list[tuple[str, Any]], runtime: str | None, extract: bool) -> Record:
        runtime = runtime or self.settings.runtime
        if runtime not in self.runtimes:
            raise Invalid(f"runtime {runtime!r} is not available here (have: {sorted(self.runtimes)})")
        with self._queue_slot():
            staging, files, config = await asyncio.to_thread(self._stage, parts, extract)
            config = config or {}
            wid = new_id("workspace")
            root = self.ws_dir(wid) / "files"
            root.parent.mkdir(parents=True)
            os.replace(staging, root)
            rec = self.store.insert(Record(id=wid, kind="workspace", state=WorkspaceState.PENDING.value,
                                           runtime=runtime, data={"files": files, "config": config}))
        logs.event(self.log_path(wid), f"workspace created with {len(files)} files; build queued",
                   runtime=runtime)
        self._queue_build(wid)
        return rec

    async def update_workspace(self, wid: str, parts: list[tuple[str, Any]], extract: bool) -> Record:
        rec = self.get(wid, "workspace")
        if rec.state not in (WorkspaceState.ACTIVE.value, WorkspaceState.FAILED.value):
            raise Conflict(f"workspace {wid} is {rec.state}; wait for its build to finish")
        with self._queue_slot():
            if parts:
                staging, _, _ = await asyncio.to_thread(self._stage, parts, extract)
                try:
                    await asyncio.to_thread(wsfiles.merge, staging, self.context(rec).root)
                finally:
                    wsfiles.remove_tree(staging)
            root = self.context(rec).root
            jinad = root / ".jinad"
            config = wsfiles.parse_jinad(jinad.read_text(errors="replace")) if jinad.exists() else {}
            rec = self.store.update(wid, state=WorkspaceState.PENDING.value, error=None,
                                    data={"files": wsfiles.list_files(root), "config": config},
                                    expect_state=(WorkspaceState.ACTIVE.value, WorkspaceState.FAILED.value))
        if rec is None:
            raise Conflict(f"workspace {wid} changed state meanwhile")
        logs.event(self.log_path(wid), f"workspace updated ({len(parts)} files); rebuild queued")
        self._queue_build(wid)
        return rec

    def _queue_build(self, wid: str) -> None:
        self._builds.submit(self._build, wid)

    def _build_lock(self, wid: str) -> threading.Lock:
        with self._build_guard:
            return self._build_locks.setdefault(wid, threading.Lock())

    def _record_build(self, wid: str, handle: dict[str, Any] | None) -> None:
        """Keep the running build command's handle in the workspace's row (``handle.build``). A
        command started for a workspace being deleted, or while the daemon shuts down, is refused
        (and killed by :func:`buildproc.popen`): checked and stored under the lock that
        :meth:`_cancel_build` takes, so no command can slip between a cancel and its kill."""
        with self._build_guard:
            if handle is not None and (wid in self._cancelled or self._closing):
                raise BuildError("the build was cancelled")
            self.store.update(wid, handle={"build": handle} if handle else {})

    def _build(self, wid: str) -> None:
        with self._build_lock(wid):
            if wid in self._cancelled or self._closing:
                return
            self._build_locked(wid)
        if wid in self._cancelled and self.store.get(wid) is None:
            self._remove_leftovers(wid)  # the delete gave up waiting for this build: tidy up after it

    def _build_locked(self, wid: str) -> None:
        rec = self.store.update(wid, state=WorkspaceState.BUILDING.value, expect_state=(WorkspaceState.PENDING.value,))
        if rec is None:
            return  # deleted or taken over meanwhile
        log_path = self.log_path(wid)

        def note(line: str, **kw: Any) -> None:
            if wid not in self._cancelled:  # a deleted workspace's log is gone; do not make a new one
                logs.event(log_path, line, **kw)

        left = buildproc.kill(rec.handle.get("build"))
        if left:  # normally done at start-up already; never two builds of one workspace at once
            note(f"killed an earlier build still running (pids {left})", level="WARNING")
        started = time.monotonic()
        note("build started")

        def log(source: str, line: str) -> None:
            note(line, source=source)

        def failed(reason: str) -> None:
            if self._closing or wid in self._cancelled:
                return  # killed on purpose: the row says BUILDING (resumed at start-up) or is gone
            note(reason, level="ERROR")
            self.store.update(wid, state=WorkspaceState.FAILED.value, error=reason,
                              expect_state=(WorkspaceState.BUILDING.value,))

        ctx = dataclasses.replace(self.context(rec), record_build=lambda h: self._record_build(wid, h))
        try:
            info = self.runtime_for(rec).build(ctx, log)
        except BuildError as exc:
            failed(f"build failed: {exc.reason}")
            return
        except Exception as exc:  # a bug or an unexpected host problem: still a FAILED build, not a crash
            failed(f"build crashed: {type(exc).__name__}: {exc}")
            return
        if self._closing or wid in self._cancelled:
            return
        took = time.monotonic() - started
        # warm up what the first object needs (its zygote) before saying ACTIVE: the first create
        # after ACTIVE is then as fast as any other
        ready = dataclasses.replace(self.context(rec), build_info=info)
        self._prepare(rec, ready, wait=True)
        note(f"build finished in {took:.2f}s, ready to start objects after "
             f"{time.monotonic() - started:.2f}s; workspace is ACTIVE")
        self.store.update(wid, state=WorkspaceState.ACTIVE.value, error=None, data={"build_info": info},
                          expect_state=(WorkspaceState.BUILDING.value,))

    def _cancel_build(self, wid: str) -> list[int]:
        """Stop the workspace's build for good (it is being deleted): a queued one never starts, a
        running one is killed (whatever the row says runs, even one an earlier daemon started),
        and this waits, bounded, for the build's thread to let go of the workspace."""
        with self._build_guard:
            self._cancelled.add(wid)
            rec = self.store.get(wid)
            handle = rec.handle.get("build") if rec is not None else None
        killed = buildproc.kill(handle)
        lock = self._build_lock(wid)
        if lock.acquire(timeout=self.settings.stop_timeout):
            lock.release()
        return killed

    def _remove_leftovers(self, wid: str, rec: Record | None = None) -> None:
        """Everything a workspace had on disk and in its runtime: venv/image/network, files, logs."""
        if rec is not None and (rt := self.runtimes.get(rec.runtime)) is not None:
            rt.remove_workspace(self.context(rec))
        elif rec is None:
            for rt in self.runtimes.values():
                ctx = WorkspaceContext(id=wid, root=self.ws_dir(wid) / "files", env_dir=self.ws_dir(wid) / "env")
                with contextlib.suppress(Exception):
                    rt.remove_workspace(ctx)
        wsfiles.remove_tree(self.ws_dir(wid))
        logs.remove(self.log_path(wid))

    def _prepare(self, rec: Record, ctx: WorkspaceContext | None = None, *, wait: bool = False) -> None:
        """Let the workspace's runtime warm up what the first object needs (a zygote)."""
        rt = self.runtimes.get(rec.runtime)
        if rt is None:
            return
        try:
            rt.prepare(ctx or self.context(rec), wait=wait)
        except Exception:  # only an optimisation: the first start does the work instead
            logging.getLogger("jinad").exception("preparing workspace %s failed", rec.id)

    async def delete_workspace(self, wid: str) -> None:
        rec = self.get(wid, "workspace")
        self.store.update(wid, state=WorkspaceState.DELETING.value)
        killed = await asyncio.to_thread(self._cancel_build, wid)
        if killed:
            logging.getLogger("jinad").info("deleting workspace %s: killed its build (pids %s)", wid, killed)
        objs = self.store.list(workspace_id=wid)
        await asyncio.gather(*(self.stop(o.id) for o in objs if o.kind != "workspace"))
        await asyncio.to_thread(self._remove_leftovers, wid, rec)
        for o in objs:
            self.store.delete(o.id)
            logs.remove(self.log_path(o.id))
            self.status_path(o.id).unlink(missing_ok=True)
        self.store.delete(wid)
        logs.remove(self.log_path(wid))

    def workspace_view(self, rec: Record) -> dict[str, Any]:
        live = [o.id for o in self.store.list(workspace_id=rec.id, states=LIVE)]
        tail = logs.tail_messages(self.log_path(rec.id), 20) if rec.state == WorkspaceState.FAILED.value else []
        return {"id": rec.id, "state": rec.state, "runtime": rec.runtime, "created": rec.created,
                "updated": rec.updated, "files": rec.data.get("files", []), "config": rec.data.get("config", {}),
                "error": rec.error, "build_log_tail": tail, "objects": live}

    # ---- flows, pods, peas -------------------------------------------------------------------

    def _active_workspace(self, wid: str) -> Record:
        ws = self.get(wid, "workspace")
        if ws.state != WorkspaceState.ACTIVE.value:
            raise Conflict(f"workspace {wid} is {ws.state}, not ACTIVE")
        return ws

    async def start_flow(self, wid: str, filename: str, peers: dict[str, str] | None = None) -> Record:
        """Start the Flow in ``filename``. Its Pods that name other daemons (``host: gpu1:8000``)
        are started there by the Flow; those daemons' tokens come from ``peers`` (the request) or
        the daemon's configured peers and reach the Flow sealed (:mod:`..launch.handoff`)."""
        ws = self._active_workspace(wid)
        rel = wsfiles.safe_relpath(filename)
        path = wsfiles.confined(self.context(ws).root, rel)
        if not path.is_file():
            raise NotFound(f"no file {str(rel)!r} in workspace {wid}")
        root = self.context(ws).root

        def checked() -> tuple[dict[str, str], list[str]]:  # one trip to a worker thread, not three
            data = wsfiles.check_yaml(path)
            wsfiles.confine_flow(path, data, root)
            return self._peer_tokens(handoff.hosts_named(data), peers or {})

        tokens, configured = await asyncio.to_thread(checked)
        fid = new_id("flow")
        status_file = self.status_path(fid)
        env: dict[str, str] = {}
        sealed = handoff.sealed_path(status_file)
        if tokens:
            env[handoff.KEY_ENV], blob = handoff.seal(tokens)
            handoff.write_sealed(sealed, blob)
        spec = LaunchSpec(object_id=fid, kind="flow", status_file=status_file, flow_yaml=str(rel),
                          host=self.settings.bind_host_for_objects, env=env)
        self._handed[fid] = {k: _digest(tokens[k]) for k in configured}
        try:
            return await self._start(ws, spec, {"filename": str(rel), "peers": sorted(tokens),
                                                "configured_peers": configured})
        finally:
            sealed.unlink(missing_ok=True)  # read by the Flow at once; gone whatever happened

    def _peer_tokens(self, hosts: list[str], given: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """The token of every daemon a Flow names: the request's, else this daemon's configured
        peer's; and the daemons whose token came from the configured peers (read again later)."""
        from ..tokens import TokenFileError, read_token_file

        given = {handoff.peer_key(k): v for k, v in given.items()}
        configured = {handoff.peer_key(k): v for k, v in self.settings.peers.items()}
        out: dict[str, str] = {}
        from_files: list[str] = []
        for host in hosts:
            key = handoff.peer_key(host)
            if key in out:
                continue
            if given.get(key):
                out[key] = given[key]
            elif key in configured:
                try:
                    out[key] = read_token_file(configured[key])
                except TokenFileError as exc:
                    raise Conflict(f"the configured token of peer {key} cannot be read: {exc}") from exc
                from_files.append(key)
        return out, sorted(from_files)

    def hand_over_peer_tokens(self) -> list[str]:
        """Give each running Flow the configured peers' tokens that changed since it was handed
        them (``provision rotate-token``, then a new token file): read again, and handed over as at
        the start, the pad through its control socket and the rest sealed beside its status file.
        Its clients, refused once with the old token, send the new one. Returns the Flows told."""
        from ..tokens import TokenFileError, read_token_file

        configured = {handoff.peer_key(k): v for k, v in self.settings.peers.items()}
        for fid in set(self._handed) - {r.id for r in self.store.list(kind="flow", states=LIVE)}:
            del self._handed[fid]
        running = self.store.list(kind="flow", states=(ObjectState.RUNNING.value,))
        current: dict[str, str] = {}
        told = []
        for rec in running:
            keys = [k for k in rec.data.get("configured_peers") or [] if k in configured]
            for key in keys:
                if key not in current:
                    try:
                        current[key] = read_token_file(configured[key])
                    except TokenFileError:  # being rewritten, or gone: the next round reads it
                        continue
            seen = self._handed.setdefault(rec.id, {})  # empty after a restart: each Flow is told once
            changed = {k: current[k] for k in keys if k in current and seen.get(k) != _digest(current[k])}
            if not changed:
                continue
            try:
                self._send_tokens(rec, changed)
            except (DaemonError, OSError) as exc:
                logging.getLogger("jinad").warning("flow %s: the new tokens of %s were not handed over: %s",
                                                   rec.id, ", ".join(sorted(changed)), exc)
                continue
            seen.update({k: _digest(v) for k, v in changed.items()})
            logs.event(self.log_path(rec.id), f"handed the Flow the new token of {', '.join(sorted(changed))}")
            told.append(rec.id)
        return told

    async def hand_over_tokens(self, fid: str, peers: dict[str, str]) -> Record:
        """``PUT /flows/{id}/peers``: hand the running Flow these daemons' new tokens."""
        rec = self.get(fid, "flow")
        if rec.state != ObjectState.RUNNING.value:
            raise Conflict(f"flow {fid} is {rec.state}, not RUNNING")
        tokens = {handoff.peer_key(k): v for k, v in peers.items() if v}
        known = set(rec.data.get("peers") or [])
        foreign = sorted(set(tokens) - known)
        if not tokens or foreign:
            raise Invalid(f"peers: flow {fid} was handed tokens for {', '.join(sorted(known)) or 'no daemon'}, "
                          f"not for {', '.join(foreign) or 'what this body names'}")
        await asyncio.to_thread(self._send_tokens, rec, tokens)
        logs.event(self.log_path(fid), f"handed the Flow the new token of {', '.join(sorted(tokens))}")
        return rec

    def _send_tokens(self, rec: Record, tokens: dict[str, str]) -> None:
        pad, blob = handoff.seal(tokens)
        # where the Flow reads it: beside its status file (a container's own status folder, through
        # the link the daemon reads), owned by the user the Flow runs as
        target = handoff.sealed_path(self.status_path(rec.id).resolve())
        handoff.write_sealed(target, blob)
        try:
            owner = target.parent.stat().st_uid
            if owner != os.geteuid():
                os.chown(target, owner, -1)
            self._flow_ctrl(rec, {"cmd": "tokens", "key": pad}, 5.0)
        finally:
            target.unlink(missing_ok=True)  # read by the Flow at once; gone whatever happened

    async def start_pod(self, kind: str, wid: str, body: PodCreate | PeaCreate) -> Record:
        """Start a Pod or Pea from its JSON args. Its CURVE keys, if the body carries them, reach it
        sealed like a Flow's tokens: never in its argv, the database or a log."""
        ws = self._active_workspace(wid)
        args = body.model_dump(exclude={"curve", "lease"})
        if args.get("changeable") and not self.runtime_for(ws).pods_grow:
            args["changeable"] = False  # a replica added later could not be reached: the Pod says it cannot grow
        if isinstance(args.get("uses"), str) and args["uses"].endswith((".yml", ".yaml")):
            rel = wsfiles.safe_relpath(args["uses"])
            path = wsfiles.confined(self.context(ws).root, rel)
            if not path.is_file():
                raise NotFound(f"uses: no file {str(rel)!r} in workspace {wid}")
            await asyncio.to_thread(wsfiles.check_yaml, path)
        for mod in args.get("py_modules") or []:
            if not wsfiles.confined(self.context(ws).root, wsfiles.safe_relpath(mod)).is_file():
                raise NotFound(f"py_modules: no file {mod!r} in workspace {wid}")
        await asyncio.to_thread(wsfiles.confine_pod, args, self.context(ws).root)
        oid = new_id(kind)
        ports = {key: args.pop(key, None) for key in POD_PORTS}
        args.pop("host", None)
        args.pop("workspace", None)  # each runtime says where the workspace is, as the object sees it
        status_file = self.status_path(oid)
        env: dict[str, str] = {}
        sealed = handoff.sealed_path(status_file)
        if body.curve is not None:
            env[handoff.KEY_ENV], blob = handoff.seal({"curve": json.dumps(body.curve.plain())})
            handoff.write_sealed(sealed, blob)
        spec = LaunchSpec(object_id=oid, kind=kind, status_file=status_file, args=args,
                          host=self.settings.bind_host_for_objects, ports=ports, gpus=body.gpus, env=env)
        try:
            return await self._start(ws, spec, {"args": body.model_dump(exclude={"curve", "lease"}),
                                                "lease": body.lease, "renewed": time.time()})
        finally:
            sealed.unlink(missing_ok=True)  # read by the object at once; gone whatever happened

    async def _start(self, ws: Record, spec: LaunchSpec, data: dict[str, Any]) -> Record:
        rt = self.runtime_for(ws)
        oid, kind = spec.object_id, spec.kind
        log_path = self.log_path(oid)
        spec.status_file.unlink(missing_ok=True)
        self.store.insert(Record(id=oid, kind=kind, workspace_id=ws.id, state=ObjectState.STARTING.value,
                                 runtime=ws.runtime, data=data))
        logs.event(log_path, f"starting {kind} in workspace {ws.id}", args=[kind, str(spec.status_file)])
        # the loader in the object refuses any path outside the directory it starts in: the workspace
        spec = dataclasses.replace(spec, env={**spec.env, CONFINE_ENV: "."})
        async with self._lock(oid):
            try:
                handle = await asyncio.to_thread(rt.start, self.context(ws), spec, log_path)
            except StartError as exc:
                logs.event(log_path, f"could not start: {exc}", level="ERROR")
                self.store.update(oid, state=ObjectState.FAILED.value, error=str(exc))
                raise Conflict(str(exc)) from exc
            self.store.update(oid, handle=handle, data={"pid": handle.get("pid")})
            return await self._await_ready(oid, rt, handle)

    def _public_addresses(self, info: dict[str, Any]) -> dict[str, Any]:
        """Objects bound on a wildcard address are reached at the host's public name."""
        wild = ("0.0.0.0", "::", "")
        host = self.settings.public_host
        gw = info.get("gateway")
        if isinstance(gw, dict) and gw.get("host") in wild:
            info["gateway"] = {**gw, "host": host}

        def fix(addr: Any) -> Any:
            if isinstance(addr, str) and addr.startswith(("tcp://0.0.0.0:", "tcp://[::]:")):
                return f"tcp://{host}:{addr.rsplit(':', 1)[1]}"
            return addr

        if "in_addresses" in info:
            info["in_addresses"] = [fix(a) for a in info["in_addresses"] or []]
        if "ctrl_address" in info:
            info["ctrl_address"] = fix(info["ctrl_address"])
        return info

    async def _await_ready(self, oid: str, rt: Runtime, handle: dict[str, Any]) -> Record:
        """Wait for the status file; on failure stop what is left and raise 400 with the reason."""
        status_file = self.status_path(oid)
        log_path = self.log_path(oid)
        deadline = time.monotonic() + self.settings.start_timeout
        delay = 0.001
        error = None
        check_alive = time.monotonic() + _ALIVE_EVERY
        while True:
            report = _read_status(status_file)
            if report is not None and report.get("state") == "ready":
                info = self._public_addresses({k: v for k, v in report.items() if k != "state"})
                logs.event(log_path, f"ready: {_summary(info)}")
                rec = self.store.update(oid, state=ObjectState.RUNNING.value, error=None, data=info,
                                        expect_state=(ObjectState.STARTING.value,))
                return rec or self.get(oid)
            if report is not None:
                error = str(report.get("error") or report)
                break
            # the status file is read at every turn (an open that fails, a few µs); whether the process
            # still lives is asked less often (psutil's reads of /proc, or a Docker API call)
            if time.monotonic() >= check_alive:
                st = rt.status(handle)
                if not st.alive:
                    report = _read_status(status_file)  # it may have written and exited in between
                    if report is not None:
                        continue
                    error = f"the process {st.detail or 'exited'} before it was ready"
                    break
                check_alive = time.monotonic() + _ALIVE_EVERY
            if time.monotonic() > deadline:
                error = f"not ready after {self.settings.start_timeout:g}s"
                break
            # a forked object is ready within tens of ms: a coarse poll would add up to its own length
            # (a turn costs an open() that fails: the liveness check above runs every 50 ms only)
            await asyncio.sleep(delay)
        await asyncio.to_thread(rt.stop, handle, self.settings.stop_timeout)
        tail = logs.tail_messages(log_path, 15)
        logs.event(log_path, f"failed to start: {error}", level="ERROR")
        self.store.update(oid, state=ObjectState.FAILED.value, error=error)
        raise StartFailed(f"{oid} failed to start: {error}", object_id=oid, log_tail=tail)

    def refresh(self, rec: Record) -> Record:
        """Ask the runtime whether a RUNNING object really runs; record the truth."""
        if rec.state != ObjectState.RUNNING.value or rec.runtime not in self.runtimes:
            return rec
        st = self.runtimes[rec.runtime].status(rec.handle)
        if st.alive:
            if rec.kind == "flow":  # a running Flow reports its Pods again when one is lost or re-placed
                report = _read_status(self.status_path(rec.id))
                if report is not None and report.get("pods") is not None and report["pods"] != rec.data.get("pods"):
                    rec = self.store.update(rec.id, data={"pods": report["pods"]}) or rec
            elif rec.kind == "pod":  # a Pod reports again when its inputs move (a restarted head, a new replica)
                report = _read_status(self.status_path(rec.id))
                if report is not None and report.get("state") == "ready":
                    info = self._public_addresses({k: v for k, v in report.items() if k != "state"})
                    if any(rec.data.get(k) != v for k, v in info.items()):
                        rec = self.store.update(rec.id, data=info) or rec
            return rec
        reason = self._death_reason(rec.id, st.detail or "the process exited")
        logs.event(self.log_path(rec.id), f"found dead: {reason}", level="ERROR")
        return self.store.update(rec.id, state=ObjectState.FAILED.value, error=reason,
                                 expect_state=(ObjectState.RUNNING.value,)) or self.get(rec.id)

    def _death_reason(self, oid: str, detail: str) -> str:
        """Why a running object is gone: what it reported on its way down (a Flow says which Pod
        died and how), then how its process ended."""
        report = _read_status(self.status_path(oid))
        if report is not None and report.get("state") == "failed" and report.get("error"):
            return f"{report['error']} (the process then {detail})"
        return detail

    def renew(self, oid: str) -> Record:
        """The object's Flow says it still wants it: its lease starts again."""
        rec = self.get(oid)
        if rec.data.get("lease"):
            rec = self.store.update(oid, data={"renewed": time.time()}) or rec
        return rec

    async def expire_leases(self) -> list[str]:
        """Stop the RUNNING objects whose lease ran out (their Flow stopped renewing them)."""
        stopped = []
        now = time.time()
        for kind in ("pod", "pea"):
            for rec in self.store.list(kind=kind, states=(ObjectState.RUNNING.value,)):
                lease = rec.data.get("lease")
                if lease and now - float(rec.data.get("renewed") or rec.created) > float(lease):
                    logs.event(self.log_path(rec.id), f"its Flow has not renewed it for {lease:g}s (lease "
                                                      "expired): stopping it", level="WARNING")
                    await self.stop(rec.id)
                    stopped.append(rec.id)
        return stopped

    def get_object(self, oid: str, kind: str) -> Record:
        return self.refresh(self.get(oid, kind))

    def list_objects(self, kind: str) -> list[Record]:
        return [self.refresh(r) for r in self.store.list(kind=kind)]

    async def stop(self, oid: str) -> Record:
        rec = self.get(oid)
        async with self._lock(oid):
            rec = self.get(oid)
            rt = self.runtimes.get(rec.runtime)
            if rec.state == ObjectState.STOPPED.value or rt is None:
                return rec
            if rec.state == ObjectState.FAILED.value and not (rec.handle and rt.status(rec.handle).alive):
                return rec
            self.store.update(oid, state=ObjectState.STOPPING.value)
            logs.event(self.log_path(oid), "stopping")
            if rec.handle:
                st = await asyncio.to_thread(rt.stop, rec.handle, self.settings.stop_timeout)
                detail = st.detail
            else:
                detail = "never started"
            logs.event(self.log_path(oid), f"stopped ({detail})" if detail else "stopped")
            keep_error = rec.error if rec.state == ObjectState.FAILED.value else None
            state = ObjectState.FAILED.value if keep_error else ObjectState.STOPPED.value
            self.status_path(oid).unlink(missing_ok=True)
            return self.store.update(oid, state=state, error=keep_error) or self.get(oid)

    # ---- live changes of a running Flow (PUT /flows/{id}) --------------------------------------

    def _flow_ctrl(self, rec: Record, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        from ..runtime.sockets import ctrl_request, make_context

        addr = rec.data.get("ctrl_address")
        if not addr:
            raise Conflict(f"{rec.kind} {rec.id} takes no live changes (started by an older jinad); start it again")
        ctx = make_context()
        try:
            reply = ctrl_request(ctx, addr, cmd, timeout)
        except JinadFabError as exc:
            raise Conflict(f"flow {rec.id} does not answer its control socket: {exc}") from exc
        finally:
            ctx.destroy(linger=0)
        if not reply.get("ok"):
            raise Conflict(f"flow {rec.id} refused {cmd.get('cmd')!r}: {reply.get('error')}")
        return reply

    async def flow_live(self, rec: Record) -> dict[str, Any] | None:
        """A running Flow's replicas, restarts and last change (None when it cannot say)."""
        if rec.state != ObjectState.RUNNING.value or not rec.data.get("ctrl_address"):
            return None
        try:
            reply = await asyncio.to_thread(self._flow_ctrl, rec, {"cmd": "status"}, 3.0)
        except DaemonError:
            return None
        return {"pods": (reply.get("live") or {}).get("pods") or {}, "change": reply.get("change")}

    async def change_flow(self, fid: str, change: dict[str, Any], wait: bool = True) -> dict[str, Any]:
        """Start a live change in the Flow's process; with ``wait``, return once it is done."""
        rec = self.get_object(fid, "flow")
        if rec.state != ObjectState.RUNNING.value:
            raise Conflict(f"flow {fid} is {rec.state}, not RUNNING")
        ws = self.get(rec.workspace_id, "workspace")
        root = self.context(ws).root
        for field in ("path", "dump_path"):
            if change.get(field) is not None:  # confined here and again in the Flow's process
                try:
                    wsfiles.confined(root, wsfiles.safe_relpath(change[field]))
                except DaemonError as exc:
                    raise Invalid(f"{field}: {exc}") from exc
        if isinstance(change.get("uses"), str) and change["uses"].endswith((".yml", ".yaml")):
            path = wsfiles.confined(root, wsfiles.safe_relpath(change["uses"]))
            if not path.is_file():
                raise Invalid(f"uses: no file {change['uses']!r} in workspace {rec.workspace_id}")
        reply = await asyncio.to_thread(self._flow_ctrl, rec, {"cmd": "change", **change}, 10.0)
        if not reply.get("accepted"):
            raise (Conflict if reply.get("status") == 409 else Invalid)(reply.get("error") or "refused")
        what = f"{change['kind']} of Pod {change['pod']!r}"
        logs.event(self.log_path(fid), f"live change: {what} started")
        while True:
            live = await self.flow_live(self.get(fid, "flow"))
            current = (live or {}).get("change") or {}
            if not wait or live is None or current.get("id") != reply.get("change") or current.get("state") != "running":
                break
            await asyncio.sleep(0.1)
        if live is None:
            raise Conflict(f"flow {fid} stopped answering during the {what}")
        if current.get("state") == "failed":
            logs.event(self.log_path(fid), f"live change: {what} failed: {current.get('error')}", level="ERROR")
            status = current.get("status")
            if status == 409:
                raise Conflict(current.get("error") or "failed")
            if status == 400:
                raise Invalid(current.get("error") or "failed")
            raise StartFailed(f"{fid}: the {what} failed: {current.get('error')}", object_id=fid)
        if current.get("state") == "done":
            logs.event(self.log_path(fid), f"live change: {what} done")
        return live

    async def change_pod(self, pid: str, change: dict[str, Any]) -> dict[str, Any]:
        """Scale or roll a standalone Pod's replicas in its Pod host; returns its new layout.

        Nothing here knows who sends into the Pod: whoever wired it points its senders at the
        layout returned (``in_target``). A Pod in a Flow changes through the Flow (PUT /flows/{id}),
        which drains a leaving replica of the requests it holds first."""
        rec = self.get_object(pid, "pod")
        if rec.state != ObjectState.RUNNING.value:
            raise Conflict(f"pod {pid} is {rec.state}, not RUNNING")
        if change["kind"] == "dump":
            raise Invalid("kind: a dump goes through the data path: ask the Flow that sends into the Pod")
        if change["kind"] == "scale" and change.get("replicas") is None:
            raise Invalid("replicas: a scale needs the number of replicas per shard")
        args: dict[str, Any] = {}
        if change["kind"] == "rolling_update":
            if not any(change.get(k) is not None for k in ("uses", "uses_with", "dump_path")):
                raise Invalid("uses_with: a rolling update needs uses, uses_with or dump_path")
            args = {k: change[k] for k in ("uses", "uses_with") if change.get(k) is not None}
            if change.get("dump_path") is not None:
                ws = self.get(rec.workspace_id, "workspace")
                try:
                    rel = wsfiles.safe_relpath(change["dump_path"])
                    wsfiles.confined(self.context(ws).root, rel)  # the Pod resolves it in its workspace
                except DaemonError as exc:
                    raise Invalid(f"dump_path: {exc}") from exc
                args["dump_path"] = str(rel)
        busy = self._pod_changes.get(pid)
        if busy:
            raise Conflict(f"a {busy} of pod {pid} is in progress; try again when it is done")
        self._pod_changes[pid] = change["kind"]
        try:
            return await asyncio.to_thread(self._change_pod, rec, change, args)
        finally:
            self._pod_changes.pop(pid, None)

    def _change_pod(self, rec: Record, change: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        layout = self._flow_ctrl(rec, {"cmd": "status"}, 5.0)
        if not layout.get("members"):
            raise Conflict(f"pod {rec.id} runs as one Pea: start it with parallel >= 2 (or shards) to change it")
        timeout = self.settings.start_timeout + 10
        events: list[dict[str, Any]] = []
        for shard, set_name in enumerate(list(layout["members"])):
            if change["kind"] == "scale":
                while len(layout["members"][set_name]["replicas"]) < change["replicas"]:
                    layout = self._flow_ctrl(rec, {"cmd": "add_replica", "shard": shard}, timeout)
                    events.append({"step": "started", "replica": layout.get("replica")})
                while len(layout["members"][set_name]["replicas"]) > change["replicas"]:
                    label = layout["labels"][set_name][layout["members"][set_name]["replicas"][-1]]
                    layout = self._flow_ctrl(rec, {"cmd": "remove_replica", "label": label}, timeout)
                    events.append({"step": "stopped", "replica": label})
            else:
                for rid in list(layout["members"][set_name]["replicas"]):
                    label = layout["labels"][set_name][rid]
                    layout = self._flow_ctrl(rec, {"cmd": "add_replica", "shard": shard, "args": args}, timeout)
                    events.append({"step": "started", "replica": layout.get("replica")})
                    layout = self._flow_ctrl(rec, {"cmd": "remove_replica", "label": label}, timeout)
                    events.append({"step": "stopped", "replica": label})
        logs.event(self.log_path(rec.id), f"live change: {change['kind']} done ({len(events)} replica steps)")
        target = layout.get("in_target")
        if isinstance(target, dict) and isinstance(target.get("replicas"), dict):
            ids = list(target["replicas"])
            public = self._public_addresses({"in_addresses": [target["replicas"][k] for k in ids]})["in_addresses"]
            target = {**target, "replicas": dict(zip(ids, public))}
        return {"in_target": target, "members": layout.get("members"), "events": events}

    def _warm_at_start(self, workspaces: list[Record]) -> list[threading.Thread]:
        """Start warming every ACTIVE workspace's zygote, all at once; recover() waits for them
        (bounded) before the daemon serves, so the first create after a start is as fast as any
        other, as after a build."""
        threads = [threading.Thread(target=self._prepare, args=(ws,), kwargs={"wait": True},
                                    name=f"prepare-{ws.id}", daemon=True) for ws in workspaces]
        for t in threads:
            t.start()
        return threads

    async def recover(self) -> dict[str, int]:
        """At start-up: re-adopt objects that still run, report the vanished, resume interrupted builds."""
        counts = {"adopted": 0, "vanished": 0, "builds_resumed": 0}
        active: list[Record] = []
        wsfiles.remove_tree(self.dirs["tmp"])
        self.dirs["tmp"].mkdir(parents=True, exist_ok=True)
        for ws in self.store.list(kind="workspace"):
            if ws.state in BUILD_ACTIVE:
                killed = await asyncio.to_thread(buildproc.kill, ws.handle.get("build"))
                why = f"; killed what was left of it (pids {killed})" if killed else ""
                logs.event(self.log_path(ws.id), f"the daemon restarted during this build{why}; building again",
                           level="WARNING")
                self.store.update(ws.id, state=WorkspaceState.PENDING.value)
                self._queue_build(ws.id)
                counts["builds_resumed"] += 1
            elif ws.state == WorkspaceState.DELETING.value:
                self._spawn(self.delete_workspace(ws.id))
            elif ws.state == WorkspaceState.ACTIVE.value:
                active.append(ws)
        warming = self._warm_at_start(active)
        for kind in ("flow", "pod", "pea"):
            for rec in self.store.list(kind=kind, states=LIVE):
                rt = self.runtimes.get(rec.runtime)
                st = await asyncio.to_thread(rt.adopt, rec.handle) if (rt and rec.handle) else None
                if st is None or not st.alive:
                    reason = (st.detail if st else f"runtime {rec.runtime!r} unavailable") or "gone"
                    reason = self._death_reason(rec.id, reason)
                    final = ObjectState.STOPPED.value if rec.state == ObjectState.STOPPING.value else ObjectState.FAILED.value
                    msg = f"vanished while the daemon was down: {reason}"
                    logs.event(self.log_path(rec.id), msg, level="ERROR")
                    self.store.update(rec.id, state=final,
                                      error=msg if final == ObjectState.FAILED.value else None)
                    counts["vanished"] += 1
                    continue
                counts["adopted"] += 1
                logs.event(self.log_path(rec.id), f"re-adopted after a daemon restart (pid {rec.handle.get('pid')})")
                if rec.state == ObjectState.STOPPING.value:
                    self.store.update(rec.id, state=ObjectState.RUNNING.value)
                    self._spawn(self.stop(rec.id))
                elif rec.state == ObjectState.STARTING.value:
                    self._spawn(self._resume_start(rec.id, rt, rec.handle))  # type: ignore[arg-type]
        deadline = time.monotonic() + PREPARE_AT_START_S  # many workspaces on a small host: the rest warm on

        def join() -> None:
            for t in warming:
                t.join(max(0.0, deadline - time.monotonic()))

        await asyncio.to_thread(join)
        return counts

    async def _resume_start(self, oid: str, rt: Runtime, handle: dict[str, Any]) -> None:
        try:
            await self._await_ready(oid, rt, handle)
        except DaemonError:
            pass


def _digest(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def _read_status(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("state") in ("ready", "failed") else None


def _summary(info: dict[str, Any]) -> str:
    if "gateway" in info:
        g = info["gateway"] or {}
        return f"gateway on {g.get('host')} http={g.get('http_port')} native={g.get('native_port')}"
    return f"in={info.get('in_addresses')} ctrl={info.get('ctrl_address')}"


"""The control socket of a Flow run by jinad: live changes asked through ``PUT /flows/{id}``.

The Flow process binds a REP socket on loopback (in a container: everywhere inside it, published
on the host's loopback only) and reports its address with the ready event; the daemon sends it:

* ``{"cmd": "change", "kind": "scale"|"rolling_update"|"dump", "pod": ..., ...}``: starts the change
  in a thread and answers at once (``accepted``), or refuses it with the HTTP status the daemon
  answers (409 while another change runs, 400 naming the bad field);
* ``{"cmd": "status"}``: replicas and restarts per Pod, and the last change with one event per
  replica started, drained or stopped (what ``jinad-fab flow scale`` prints as it goes);
* ``{"cmd": "tokens", "key": PAD}``: other daemons' new tokens (after ``provision rotate-token``),
  handed over as at the start (:mod:`.handoff`: the pad here, the rest sealed next to the status
  file); the answer names the daemons, never a token.

Paths (a dump's ``path``, ``dump_path``) are resolved inside the Flow's directory (its workspace)
here too, not only by the daemon: whoever reaches the socket cannot make the Flow write elsewhere.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import zmq

from ..errors import BadInput, JinadFabError
from ..runtime.control import Commands
from ..runtime.sockets import bind, connect_host, make_context

log = logging.getLogger("jinad_fab.flow")

KINDS = ("scale", "rolling_update", "dump")
_FIELDS = {"scale": ("replicas",), "rolling_update": ("uses", "uses_with", "dump_path"), "dump": ("path",)}


def _confined(root: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput(f"{field}: a directory path inside the workspace, got {value!r}")
    path = os.path.realpath(os.path.join(root, value))
    if os.path.commonpath([path, os.path.realpath(root)]) != os.path.realpath(root):
        raise BadInput(f"{field}: {value!r} is outside the workspace")
    return path


def check_change(cmd: dict, pods: list[str], root: str) -> dict:
    """The change's arguments, checked; BadInput names the field that is wrong."""
    kind = cmd.get("kind")
    if kind not in KINDS:
        raise BadInput(f"kind: one of {', '.join(KINDS)}, got {kind!r}")
    pod = cmd.get("pod")
    if pod not in pods:
        raise BadInput(f"pod: the Flow has no Pod {pod!r} (its Pods: {', '.join(pods)})")
    extra = sorted(k for k in cmd if k not in ("cmd", "kind", "pod", *_FIELDS[kind]) and cmd[k] is not None)
    if extra:
        raise BadInput(f"{extra[0]}: not taken by a {kind} (it takes {', '.join(_FIELDS[kind])})")
    out: dict[str, Any] = {"kind": kind, "pod": pod}
    if kind == "scale":
        n = cmd.get("replicas")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 64:
            raise BadInput(f"replicas: an integer from 1 to 64, got {n!r}")
        out["replicas"] = n
    elif kind == "rolling_update":
        if all(cmd.get(k) is None for k in _FIELDS[kind]):
            raise BadInput("uses_with: a rolling update needs uses, uses_with or dump_path")
        if cmd.get("uses") is not None and not isinstance(cmd["uses"], str):
            raise BadInput(f"uses: an Executor name or a YAML file of the workspace, got {cmd['uses']!r}")
        if cmd.get("uses_with") is not None and not isinstance(cmd["uses_with"], dict):
            raise BadInput(f"uses_with: a mapping of the Executor's arguments, got {cmd['uses_with']!r}")
        for k in ("uses", "uses_with"):
            if cmd.get(k) is not None:
                out[k] = cmd[k]
        if cmd.get("dump_path") is not None:
            out["dump_path"] = _confined(root, "dump_path", cmd["dump_path"])
    else:
        out["path"] = _confined(root, "path", cmd.get("path"))
    return out


class FlowControl:
    def __init__(self, flow: Any, host: str = "127.0.0.1", root: str | None = None, port: int = 0,
                 status_file: str | None = None):
        self.flow = flow
        self.status_file = status_file
        self.root = root or os.getcwd()
        self.ctx = make_context()
        self.sock, port = bind(self.ctx, zmq.REP, host, port)
        # bound everywhere (in a container): reached on loopback, where the runtime publishes it
        self.address = f"tcp://{connect_host(host)}:{port}"
        self.commands = Commands(self.sock, {"change": self._change, "status": self._status, "tokens": self._tokens})
        self.current: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._seq = 0

    def serve(self, timeout_ms: int) -> None:
        if self.sock.poll(timeout_ms):
            self.commands.serve_one()

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.destroy(linger=0)

    def _tokens(self, cmd: dict) -> dict:
        from . import handoff

        key = cmd.get("key")
        if not isinstance(key, str) or not key or not self.status_file:
            raise BadInput("tokens: the handoff key is missing")
        try:
            tokens = handoff.take(self.status_file, {handoff.KEY_ENV: key})
        except (OSError, ValueError) as exc:
            raise BadInput(f"tokens: the sealed tokens could not be read ({type(exc).__name__})") from exc
        self.flow._use_daemon_tokens(tokens)
        log.info("new tokens for the daemons %s", ", ".join(sorted(tokens)))
        return {"peers": sorted(tokens)}

    def _status(self, cmd: dict) -> dict:
        with self._lock:
            change = dict(self.current, events=list(self.current["events"])) if self.current else None
        return {"live": self.flow.live_status(), "change": change}

    def _change(self, cmd: dict) -> dict:
        try:
            args = check_change(cmd, list(self.flow.pods), self.root)
        except BadInput as exc:
            return {"accepted": False, "status": 400, "error": str(exc)}
        with self._lock:
            if self.current is not None and self.current["state"] == "running":
                c = self.current
                return {"accepted": False, "status": 409,
                        "error": f"a {c['kind']} of Pod {c['pod']!r} is in progress; try again when it is done"}
            self._seq += 1
            self.current = {"id": self._seq, "kind": args["kind"], "pod": args["pod"], "state": "running",
                            "started": time.time(), "events": [], "result": None, "error": None, "status": None}
            record = self.current
        threading.Thread(target=self._run, args=(record, args), name="flow-change", daemon=True).start()
        return {"accepted": True, "change": record["id"]}

    def _run(self, record: dict, args: dict) -> None:
        def progress(event: dict) -> None:
            with self._lock:
                record["events"].append(dict(event, at=time.time()))

        kind, pod = args.pop("kind"), args.pop("pod")
        try:
            if kind == "scale":
                result = self.flow.scale(pod, args["replicas"], progress=progress)
            elif kind == "rolling_update":
                result = self.flow.rolling_update(pod, progress=progress, **args)
            else:
                result = self.flow.dump(pod, args["path"])
            state, error, status = "done", None, 200
        except JinadFabError as exc:
            result, state, error, status = None, "failed", str(exc), exc.http_status
        except Exception as exc:  # reported to the caller, never lost in a thread
            log.exception("the %s of Pod %r failed", kind, pod)
            result, state, error, status = None, "failed", f"{type(exc).__name__}: {exc}", 500
        with self._lock:
            record.update(state=state, result=result, error=error, status=status, finished=time.time())

"""Run one service of a statically wired Flow (what every exported container runs).

``python -m jinad_fab.launch static --yaml FLOW --role SERVICE`` loads the Flow, computes its
static plan (:func:`jinad_fab.flow.static.plan`) - the same one the export was written from - and
runs that service's Pea or Gateway in this process, with nobody to report to but an optional
``--status-file``. ``probe --address tcp://127.0.0.1:PORT`` is the container's health check: it
asks the process's control socket for its status and exits 0 only on an answer.
"""

from __future__ import annotations

import logging
import os

from ..errors import JinadFabError
from ..flow.static import plan, service
from ..flow.yaml import load_flow
from ..runtime import entry

log = logging.getLogger("jinad_fab.static")


def run_static(path: str | None, role: str | None, report: entry.Report, *, local_base_port: int | None = None,
               replica: int | None = None, log_json: bool = False) -> int:
    try:
        if not path or not role:
            raise JinadFabError("static needs --yaml FLOW and --role SERVICE")
        flow = load_flow(path)
        svc = service(plan(flow, local_base_port=local_base_port), role)
    except JinadFabError as exc:
        log.error("cannot start: %s", exc)
        report({"state": "failed", "error": str(exc)})
        return 1
    args = dict(svc["args"])
    if svc["kind"] == "pea" and svc["role"] != "head":
        args["base_dir"] = os.getcwd()  # the image's copy of the Flow's folder, where the container starts
        if replica is not None:
            args["replica_id"] = replica
            if svc["replicas"] > 1:
                args["name"] = f"{args['name']}/replica-{replica}"
    if local_base_port is not None:
        # no engine sets the environment here: do what a container's `environment:` would
        os.environ.update({str(k): str(v) for k, v in (svc.get("env") or {}).items()})
    log.info("%s: %s of %s, connecting to %s", role, svc["role"], svc.get("pod") or "the Flow",
             ", ".join(svc["connects_to"]) or "nothing (peers connect to it)")
    return entry.run(svc["kind"], args, report, die_with_parent=False, log_json=log_json)


def probe(address: str | None, timeout: float = 3.0) -> int:
    """0 when the process behind the control ``address`` answers ``status``, 1 otherwise."""
    from ..runtime.sockets import ctrl_request, make_context

    if not address:
        print("probe needs --address tcp://127.0.0.1:PORT")
        return 2
    ctx = make_context()
    try:
        reply = ctrl_request(ctx, address, {"cmd": "status"}, timeout=timeout)
    except JinadFabError as exc:
        print(f"unhealthy: {exc}")
        return 1
    finally:
        ctx.destroy(linger=0)
    if not reply.get("ok") or (reply.get("failed") is not None):
        print(f"unhealthy: {reply}")
        return 1
    return 0

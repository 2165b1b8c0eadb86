"""``python -m jinad_fab.launch {pea,gateway,pod,flow,zygote,static,probe} ...``: the process ``jinad`` starts.

``pea``, ``gateway`` and ``pod`` run a runtime object (:func:`jinad_fab.runtime.entry.run`);
``flow`` serves a Flow from YAML (:mod:`.serve`); ``zygote`` forks any of those on request
(:mod:`.zygote`). ``static`` runs one service of a statically wired Flow and ``probe`` checks one
(what exported containers run, :mod:`.static`). Every kind but the zygote reports exactly one JSON line/file when it is ready
(with its ports) or has failed (with the reason), on ``--status-fd`` or ``--status-file``.
"""

from __future__ import annotations

import argparse
import json
import os

from ..runtime import entry
from . import handoff

KINDS = (*entry.KINDS, "flow", "zygote", "static", "probe")


def parser() -> argparse.ArgumentParser:
    p = entry.parser("python -m jinad_fab.launch", KINDS)
    p.add_argument("--yaml", help="flow: the Flow YAML file")
    p.add_argument("--host", default=None, help="flow: address the Gateway binds")
    p.add_argument("--port-http", type=int, default=None)
    p.add_argument("--port-native", type=int, default=None)
    p.add_argument("--port-ctrl", type=int, default=None, help="flow: the port of its control socket (live changes)")
    p.add_argument("--ctrl-host", default=None, help="flow: the address its control socket binds (default loopback)")
    p.add_argument("--socket", help="zygote: the unix socket it listens on")
    p.add_argument("--role", help="static: the service of the Flow to run (see `jinad-fab render compose`)")
    p.add_argument("--replica", type=int, default=None, help="static: which replica of its service this is")
    p.add_argument("--local-base-port", type=int, default=None,
                   help="static: every service on this machine, on loopback ports from this one on")
    p.add_argument("--address", help="probe: the control address to ask for a status")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    ns = p.parse_args(argv)
    entry.arm_orphan_check(ns)
    if ns.kind == "zygote":
        if not ns.socket:
            p.error("zygote needs --socket PATH")
        from .zygote import serve

        return serve(ns.socket)
    if ns.kind == "probe":
        from .static import probe

        return probe(ns.address)
    args = entry.parse_args_json(ns)
    if args is None:
        return 2
    if ns.kind in entry.KINDS:
        try:  # a Pod's CURVE keys, sealed by jinad; taken before anything is forked
            sealed = handoff.take(ns.status_file, os.environ)
            if "curve" in sealed:
                args["curve"] = json.loads(sealed["curve"])
        except (OSError, ValueError) as exc:
            entry.make_reporter(ns.status_fd, ns.status_file)(
                {"state": "failed", "error": f"the keys jinad handed over could not be read: {type(exc).__name__}"})
            return 1
    entry.setup_logging(args.get("name") or ns.role or ns.kind, ns.log_json,
                        ns.log_level or os.environ.get("JINAD_FAB_LOG_LEVEL"))
    report = entry.make_reporter(ns.status_fd, ns.status_file)
    if ns.kind == "static":
        from .static import run_static

        return run_static(ns.yaml, ns.role, report, local_base_port=ns.local_base_port, replica=ns.replica,
                          log_json=ns.log_json)
    if ns.kind == "flow":
        from .serve import run_flow

        return run_flow(ns.yaml, report, host=ns.host, port_http=ns.port_http, port_native=ns.port_native,
                        die_with_parent=ns.die_with_parent, log_json=ns.log_json, status_file=ns.status_file,
                        port_ctrl=ns.port_ctrl, ctrl_host=ns.ctrl_host)
    return entry.run(ns.kind, args, report, die_with_parent=ns.die_with_parent, log_json=ns.log_json)


if __name__ == "__main__":
    entry.exit_now(main())

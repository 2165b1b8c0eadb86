"""``python -m jinad_fab.launch {pea,gateway,pod,flow,zygote} ...``: the process ``jinad`` starts.

``pea``, ``gateway`` and ``pod`` run a runtime object (:func:`jinad_fab.runtime.entry.run`);
``flow`` serves a Flow from YAML (:mod:`.serve`); ``zygote`` forks any of those on request
(:mod:`.zygote`). Every kind but the zygote reports exactly one JSON line/file when it is ready
(with its ports) or has failed (with the reason), on ``--status-fd`` or ``--status-file``.
"""

from __future__ import annotations

import argparse
import os

from ..runtime import entry

KINDS = (*entry.KINDS, "flow", "zygote")


def parser() -> argparse.ArgumentParser:
    p = entry.parser("python -m jinad_fab.launch", KINDS)
    p.add_argument("--yaml", help="flow: the Flow YAML file")
    p.add_argument("--host", default=None, help="flow: address the Gateway binds")
    p.add_argument("--port-http", type=int, default=None)
    p.add_argument("--port-native", type=int, default=None)
    p.add_argument("--socket", help="zygote: the unix socket it listens on")
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
    args = entry.parse_args_json(ns)
    if args is None:
        return 2
    entry.setup_logging(args.get("name") or ns.kind, ns.log_json,
                        ns.log_level or os.environ.get("JINAD_FAB_LOG_LEVEL"))
    report = entry.make_reporter(ns.status_fd, ns.status_file)
    if ns.kind == "flow":
        from .serve import run_flow

        return run_flow(ns.yaml, report, host=ns.host, port_http=ns.port_http, port_native=ns.port_native,
                        die_with_parent=ns.die_with_parent, log_json=ns.log_json, status_file=ns.status_file)
    return entry.run(ns.kind, args, report, die_with_parent=ns.die_with_parent, log_json=ns.log_json)


if __name__ == "__main__":
    entry.exit_now(main())

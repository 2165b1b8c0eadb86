"""Process entry point: ``python -m jinad_fab.runtime {pea,gateway,pod,flow,zygote} ...``.

A started process reports exactly one JSON line/file when it is ready (with its ports) or has
failed (with the reason): on ``--status-fd`` (a pipe from the starter) or ``--status-file``
(written atomically; what the daemon uses, since it may restart while the process lives on).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys


class _JsonFormatter(logging.Formatter):
    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 6), "level": record.levelname.lower(), "source": self.source,
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(source: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter(source))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {source}@%(process)d %(levelname)s %(message)s",
                                               "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = os.environ.get("JINAD_FAB_LOG_LEVEL", "INFO").upper()
    root.setLevel(level if level in logging._nameToLevel else "INFO")


def make_reporter(status_fd: int | None, status_file: str | None):
    def report(event: dict) -> None:
        line = json.dumps(event)
        if status_fd is not None:
            try:
                os.write(status_fd, (line + "\n").encode())
                os.close(status_fd)
            except OSError:
                pass
        if status_file:
            tmp = f"{status_file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, status_file)

    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jinad_fab.runtime")
    p.add_argument("kind", choices=["pea", "gateway", "pod", "flow", "zygote"])
    p.add_argument("--args-json", default="{}", help="the Pea/Pod/Gateway arguments as JSON")
    p.add_argument("--yaml", help="flow: the Flow YAML file")
    p.add_argument("--host", default=None, help="flow: address the Gateway binds")
    p.add_argument("--port-http", type=int, default=None)
    p.add_argument("--port-native", type=int, default=None)
    p.add_argument("--status-fd", type=int, default=None)
    p.add_argument("--status-file", default=None)
    p.add_argument("--die-with-parent", action="store_true", help="exit when the starting process dies")
    p.add_argument("--parent-pid", type=int, default=None, help="the starting process (with --die-with-parent)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    p.add_argument("--socket", help="zygote: the unix socket it listens on")
    ns = p.parse_args(argv)
    if ns.die_with_parent:
        from .orphan import arm

        arm(ns.parent_pid)
    if ns.kind == "zygote":
        from .zygote import serve

        if not ns.socket:
            p.error("zygote needs --socket PATH")

        return serve(ns.socket)
    try:
        args = json.loads(ns.args_json)
    except json.JSONDecodeError as exc:
        print(f"--args-json is not valid JSON: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.get("name") or ns.kind, ns.log_json)
    report = make_reporter(ns.status_fd, ns.status_file)
    if ns.kind == "pea":
        from .pea import run_pea

        return run_pea(args, report, ns.die_with_parent)
    if ns.kind == "gateway":
        from .gateway import run_gateway

        return run_gateway(args, report, ns.die_with_parent)
    if ns.kind == "pod":
        from .host import run_pod

        if ns.log_json:
            args["log_json"] = True
        return run_pod(args, report, ns.die_with_parent)
    # A Flow sits above the runtime layer; this process entry point is an edge (like a CLI), so it
    # reaches the Flow by name instead of importing upward.
    serve = importlib.import_module("jinad_fab.flow.serve")
    return serve.run_flow(ns.yaml, report, host=ns.host, port_http=ns.port_http, port_native=ns.port_native,
                          die_with_parent=ns.die_with_parent, log_json=ns.log_json)


if __name__ == "__main__":
    code = main()
    # everything the process owns (sockets, Executor state) is closed by now; skipping the
    # interpreter's slow teardown of numpy/asyncio/uvicorn makes stopping a Flow quicker
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)

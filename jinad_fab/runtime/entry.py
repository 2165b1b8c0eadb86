"""What a runtime process runs: one Pea, Gateway or Pod host, reporting once when it is ready.

Two programs use it. ``python -m jinad_fab.runtime {pea,gateway}`` is what the runtime itself
starts for the Peas of a Pod and a Flow's Gateway (see :mod:`jinad_fab.runtime.child`); the edge
program ``python -m jinad_fab.launch`` (Flows, Pod hosts and the zygote, for ``jinad``) adds its
own kinds on top of the same arguments, logging and report. This module knows nothing of them.

A started process reports exactly one JSON line/file when it is ready (with its ports) or has
failed (with the reason): on ``--status-fd`` (a pipe from the starter) or ``--status-file``
(written atomically; what the daemon uses, since it may restart while the process lives on).

Arguments that are secrets (:data:`SECRET_ARGS`: a Flow's CURVE keys) never travel in the command
line, which any user of the machine can read in ``/proc/<pid>/cmdline``: the starter writes them as
one JSON object to a pipe (``--secrets-fd``), and they are merged into the arguments here. (``jinad``
hands them over sealed instead, see :mod:`jinad_fab.launch.handoff`.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

Report = Callable[[dict], None]
KINDS = ("pea", "gateway", "pod")
SECRET_ARGS = frozenset({"curve"})
"""Arguments handed over with ``--secrets-fd``, never in ``--args-json``."""


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


def setup_logging(source: str, as_json: bool, level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter(source))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {source}@%(process)d %(levelname)s %(message)s",
                                               "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = (level or "INFO").upper()
    root.setLevel(level if level in logging._nameToLevel else "INFO")


def make_reporter(status_fd: int | None, status_file: str | None) -> Report:
    fd = [status_fd]

    def report(event: dict) -> None:
        line = json.dumps(event)
        if fd[0] is not None:  # once: a later report (a Flow's or a Pod's, as it changes) goes to the file alone
            status_fd, fd[0] = fd[0], None  # closed below, its number may be reused by any file opened later
            try:
                os.write(status_fd, (line + "\n").encode())
                os.close(status_fd)
            except OSError:
                pass
        if status_file:
            # written aside and renamed: a reader sees all of it or nothing. Not fsynced (that was a
            # third of a Pod's start on a busy disk): a daemon killed meanwhile reads it from the page
            # cache when it restarts, and a machine that crashes took this process with it
            tmp = f"{status_file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(line)
            os.replace(tmp, status_file)

    return report


def parser(prog: str, kinds: tuple[str, ...] = KINDS) -> argparse.ArgumentParser:
    """The arguments every runtime process takes; an edge program adds its own kinds and options."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("kind", choices=list(kinds))
    p.add_argument("--args-json", default="{}", help="the Pea/Pod/Gateway arguments as JSON")
    p.add_argument("--secrets-fd", type=int, default=None, help="a pipe to read secret arguments from (JSON)")
    p.add_argument("--status-fd", type=int, default=None)
    p.add_argument("--status-file", default=None)
    p.add_argument("--die-with-parent", action="store_true", help="exit when the starting process dies")
    p.add_argument("--parent-pid", type=int, default=None, help="the starting process (with --die-with-parent)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    p.add_argument("--log-level", default=None, help="the root log level (INFO when not given)")
    return p


def arm_orphan_check(ns: argparse.Namespace) -> None:
    """First thing in the process: exit with the parent if asked to (before the heavy imports)."""
    if ns.die_with_parent:
        from .orphan import arm

        arm(ns.parent_pid)


def parse_args_json(ns: argparse.Namespace) -> dict | None:
    try:
        args = json.loads(ns.args_json)
    except json.JSONDecodeError as exc:
        print(f"--args-json is not valid JSON: {exc}", file=sys.stderr)
        return None
    if not isinstance(args, dict):
        print("--args-json must be a JSON object", file=sys.stderr)
        return None
    try:
        secrets = read_secrets(ns.secrets_fd)
    except (OSError, ValueError) as exc:
        print(f"cannot read the secret arguments: {type(exc).__name__}", file=sys.stderr)  # never their text
        return None
    args.update(secrets)
    return args


def split_secrets(args: dict) -> tuple[dict, dict]:
    """``args`` without its secrets, and the secrets (see :data:`SECRET_ARGS`)."""
    public = {k: v for k, v in args.items() if k not in SECRET_ARGS}
    secrets = {k: v for k, v in args.items() if k in SECRET_ARGS and v is not None}
    return public, secrets


def secrets_pipe(secrets: dict) -> int:
    """A pipe holding ``secrets`` as JSON, its write end closed: pass the returned read end to the
    child as ``--secrets-fd`` (a few hundred bytes: the pipe's buffer holds them without a reader)."""
    r, w = os.pipe()
    try:
        os.write(w, json.dumps(secrets).encode())
    finally:
        os.close(w)
    return r


def read_secrets(fd: int | None) -> dict:
    if fd is None:
        return {}
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict) or set(data) - SECRET_ARGS:
        raise ValueError("not an object of secret arguments")
    return data


def run(kind: str, args: dict, report: Report, *, die_with_parent: bool, log_json: bool) -> int:
    """Run one runtime object of ``kind`` in this process until it stops; returns the exit code."""
    if kind == "pea":
        from .pea import run_pea

        return run_pea(args, report, die_with_parent)
    if kind == "gateway":
        from .gateway import run_gateway

        return run_gateway(args, report, die_with_parent)
    if kind == "pod":
        from .pod_host import run_pod

        if log_json:
            args["log_json"] = True
        return run_pod(args, report, die_with_parent)
    raise ValueError(f"not a runtime kind: {kind!r}")


def main(argv: list[str] | None = None, default_log_level: str | None = None) -> int:
    """``python -m jinad_fab.runtime {pea,gateway,pod} ...`` (the runtime's own children)."""
    ns = parser("python -m jinad_fab.runtime").parse_args(argv)
    arm_orphan_check(ns)
    args = parse_args_json(ns)
    if args is None:
        return 2
    setup_logging(args.get("name") or ns.kind, ns.log_json, ns.log_level or default_log_level)
    return run(ns.kind, args, make_reporter(ns.status_fd, ns.status_file),
               die_with_parent=ns.die_with_parent, log_json=ns.log_json)


def exit_now(code: int | None) -> None:
    """Leave a runtime process at once: everything it owns (sockets, Executor state) is closed by
    now, and skipping the interpreter's slow teardown of numpy/asyncio/uvicorn makes stopping quicker."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)

"""A warm parent for runtime processes: ``python -m jinad_fab.launch zygote --socket PATH``.

Starting a Flow, Pod or Pea as a new interpreter costs the interpreter's start-up plus importing
numpy, pyzmq, the Gateway's web stack and this package, which is most of the time ``jinad`` needs
to start one. A zygote pays that once per workspace: it imports everything a runtime process
needs, then listens on a unix socket (mode 0600) and forks a child per request. The child runs
the same entry point a new interpreter would (:func:`jinad_fab.launch.__main__.main`), in its own
session, with its output appended to a log file.

The protocol is one JSON line in, one JSON line out, one request per connection::

    {"argv": [...], "cwd": DIR, "env": {...}, "log_path": FILE}   ->  {"pid": N, "start_time": T}
    {"op": "exit_code", "pid": N}                                  ->  {"pid": N, "exit_code": C}
    {"op": "ping"}                                                 ->  {"pid": <the zygote's>}
    {"op": "exit"}                                                 ->  {"ok": true}, then it exits
    anything malformed                                             ->  {"error": "..."}

The zygote stays single-threaded and never creates a ZeroMQ context, so a fork copies nothing
that could be half-locked. It reaps its children as they exit (their exit codes are kept for a
while so the daemon can say why an object stopped), and exits when told to or when its parent (the
daemon) goes away. Its children outlive it: they are session leaders that do not watch it, and a
restarted daemon finds them again by pid + start time.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys

_MAX_REQUEST = 4 * 1024 * 1024
_PARENT_CHECK = 0.5  # seconds between checks that the daemon is still there
_KEEP_EXIT_CODES = 4096
_ZYGOTE_CWD = ""  # sys.path[0] as the zygote started; a child started elsewhere gets its own cwd there


class BadRequest(Exception):
    """A request the zygote answers with ``{"error": ...}``."""


def preload() -> None:
    """Import what any runtime process imports, so a forked child starts working at once."""
    import numpy  # noqa: F401
    import numpy.random  # noqa: F401 - numpy imports it lazily: each child would, to reseed it (~4 ms)
    import zmq  # noqa: F401

    from ..runtime import gateway, pea, pod_host  # noqa: F401
    from . import __main__, serve  # noqa: F401 - what a child runs (imported, not run as __main__)

    gateway.preload()
    with contextlib.suppress(ImportError):
        import psutil  # noqa: F401 - for _start_time


def set_name(name: str) -> None:
    """Name this process in ``ps -o comm``/``top`` (Linux; 15 bytes at most). A forked child keeps
    the zygote's command line, so the name is what tells a Pea from the zygote that forked it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _start_time(pid: int) -> float | None:
    """The child's start time as psutil reports it (what a daemon compares against later)."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # psutil missing from this interpreter, or the child is already gone
        return None


def _child(listener: socket.socket, conn: socket.socket, wake_fds: tuple[int, int], req: dict) -> None:
    """In the forked child: become the runtime process the request describes. Never returns."""
    code = 1
    try:
        listener.close()
        conn.close()
        signal.set_wakeup_fd(-1)
        for fd in wake_fds:
            os.close(fd)
        # the dispositions a new interpreter starts with
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        log_fd = os.open(req["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        cwd = req.get("cwd")
        if cwd:
            os.chdir(cwd)
            if sys.path and sys.path[0] == _ZYGOTE_CWD:
                sys.path[0] = os.getcwd()  # what `python -m` run from cwd would have put there
        if req.get("env") is not None:
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in req["env"].items()})
        sys.argv = [sys.argv[0], *req["argv"]]
        set_name(f"jinad-{req['argv'][0]}")
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # forked children must not share one random stream
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(code)
    from ..runtime.child import run_forked
    from .__main__ import main

    run_forked(main, list(req["argv"]))


def _parse(raw: bytes) -> dict:
    try:
        req = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise BadRequest("a request is a JSON object")
    op = req.get("op", "spawn")
    if op == "spawn":
        argv, log_path, env = req.get("argv"), req.get("log_path"), req.get("env")
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise BadRequest("argv must be a non-empty list of strings")
        if argv[0] == "zygote":
            raise BadRequest("a zygote does not fork zygotes")
        if not isinstance(log_path, str) or not log_path:
            raise BadRequest("log_path must be a path")
        if env is not None and not isinstance(env, dict):
            raise BadRequest("env must be an object")
        cwd = req.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
            raise BadRequest(f"cwd {cwd!r} is not a directory")
        try:  # fail here, with an answer, rather than in a child nobody hears
            os.close(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            raise BadRequest(f"cannot open log_path: {exc}") from None
    elif op == "exit_code":
        if not isinstance(req.get("pid"), int):
            raise BadRequest("exit_code needs an integer pid")
    elif op not in ("ping", "exit"):
        raise BadRequest(f"unknown op {op!r}")
    req["op"] = op
    return req


def _read_request(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > _MAX_REQUEST:
            raise BadRequest(f"request larger than {_MAX_REQUEST} bytes")
    return buf.split(b"\n", 1)[0]


def _listen(path: str) -> socket.socket:
    """Listen on ``path``; it appears (replacing a stale one) only once it accepts connections."""
    tmp = f"{path}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: whoever can connect can run code as us
    try:
        s.bind(tmp)
    finally:
        os.umask(old)
    os.chmod(tmp, 0o600)
    s.listen(64)
    s.set_inheritable(False)
    os.replace(tmp, path)
    return s


def serve(socket_path: str) -> int:
    """Run the zygote until told to exit or orphaned. Returns the exit code."""
    global _ZYGOTE_CWD
    _ZYGOTE_CWD = sys.path[0] if sys.path else ""
    parent = os.getppid()
    set_name("jinad-zygote")
    preload()
    # what was imported stays shared with the children: the collector will not write to it
    gc.collect()
    gc.freeze()
    exit_codes: collections.OrderedDict[int, int] = collections.OrderedDict()
    children: set[int] = set()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                return
            if pid == 0:
                return
            children.discard(pid)
            exit_codes[pid] = os.waitstatus_to_exitcode(status)
            while len(exit_codes) > _KEEP_EXIT_CODES:
                exit_codes.popitem(last=False)

    stopping = {"flag": False}

    def on_term(signum, frame) -> None:
        stopping["flag"] = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wake-up fd is what we want
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_term)
    listener = _listen(socket_path)
    mine = os.stat(socket_path)
    print(json.dumps({"msg": f"zygote {os.getpid()} ready on {socket_path}", "source": "zygote"}), flush=True)
    try:
        while not stopping["flag"] and os.getppid() == parent:
            ready, _, _ = select.select([listener, wake_r], [], [], _PARENT_CHECK)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 4096):
                        pass
            reap()
            if listener not in ready:
                continue
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10)
                answer: dict
                try:
                    req = _parse(_read_request(conn))
                    if req["op"] == "spawn":
                        sys.stdout.flush()
                        sys.stderr.flush()
                        pid = os.fork()
                        if pid == 0:
                            _child(listener, conn, (wake_r, wake_w), req)
                        children.add(pid)
                        answer = {"pid": pid, "start_time": _start_time(pid)}
                    elif req["op"] == "exit_code":
                        reap()
                        answer = {"pid": req["pid"], "exit_code": exit_codes.get(req["pid"])}
                    elif req["op"] == "ping":
                        answer = {"pid": os.getpid(), "children": len(children)}
                    else:
                        answer = {"ok": True}
                        stopping["flag"] = True
                except BadRequest as exc:
                    answer = {"error": str(exc)}
                except OSError as exc:  # a client that went away, or a fork the host refused
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall((json.dumps(answer) + "\n").encode())
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            now = os.stat(socket_path)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):  # not a successor's socket
                os.unlink(socket_path)
    why = "told to" if stopping["flag"] else "its parent went away"
    print(json.dumps({"msg": f"zygote {os.getpid()} exiting ({why}); {len(children)} children live on",
                      "source": "zygote"}), flush=True)
    return 0

"""The zygote: a real `python -m jinad_fab.launch zygote` forking real Peas over its unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

PROBE = '''
import os

from jinad_fab import Executor


class EnvProbe(Executor):
    def __init__(self, **kw):
        super().__init__(**kw)
        with open(os.environ["PROBE_OUT"], "w") as fh:
            fh.write(f"{os.environ.get('PROBE_VALUE')}|{os.getcwd()}|{os.getsid(0)}|{os.getpid()}")
'''


def _ask(path: pathlib.Path, req, timeout: float = 10) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall((req if isinstance(req, str) else json.dumps(req)).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"no {what} within {timeout}s")


def zygote_name(pid: int) -> str:
    return psutil.Process(pid).name()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def _zygote(tmp_path: pathlib.Path):
    """A zygote on a socket in a short private directory; it and everything it forked die afterwards."""
    sock_dir = pathlib.Path(tempfile.mkdtemp(prefix="zyg-"))  # unix socket paths are short
    sock = sock_dir / "z.sock"
    log = tmp_path / "zygote.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.launch", "zygote", "--socket", str(sock)],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    forked: list[int] = []

    class Z:
        pass

    z = Z()
    z.proc, z.sock, z.log, z.forked = proc, sock, log, forked

    def ask(req, timeout: float = 10) -> dict:
        answer = _ask(sock, req, timeout)
        if "pid" in answer and answer["pid"] != proc.pid and "exit_code" not in answer:
            forked.append(answer["pid"])
        return answer

    z.ask = ask
    try:
        # the socket appears once it accepts connections
        _wait(lambda: proc.poll() is not None or sock.exists(), 60, "zygote")
        assert proc.poll() is None, log.read_text()
        yield z
    finally:
        for pid in [proc.pid, *forked]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        for pid in forked:
            _wait(lambda pid=pid: _gone(pid), 10, f"end of {pid}")
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def zygote(tmp_path):
    with _zygote(tmp_path) as z:
        yield z


@pytest.fixture(scope="module")
def survivor(tmp_path_factory):
    """One zygote for the bad requests: each case checks that it still answers afterwards, which is
    the point of those cases, and what lets the next one ask the same zygote."""
    with _zygote(tmp_path_factory.mktemp("zygote")) as z:
        yield z


def _pea_request(tmp_path: pathlib.Path, name: str, env: dict | None = None) -> tuple[dict, pathlib.Path]:
    status = tmp_path / f"{name}.json"
    args = {"name": name, "uses": "_logforward", "host": "127.0.0.1"}
    return {"argv": ["pea", "--args-json", json.dumps(args), "--status-file", str(status), "--log-json"],
            "cwd": str(tmp_path), "env": env if env is not None else dict(os.environ),
            "log_path": str(tmp_path / f"{name}.log")}, status


def test_socket_is_private(zygote):
    assert stat.S_IMODE(os.stat(zygote.sock).st_mode) == 0o600
    assert zygote.ask({"op": "ping"}) == {"pid": zygote.proc.pid, "children": 0}


def test_child_runs_in_its_own_session_with_the_requested_env_cwd_and_log(zygote, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    out = tmp_path / "probe.out"
    status = tmp_path / "probe.json"
    args = {"name": "probe", "uses": "EnvProbe", "py_modules": ["probe.py"], "host": "127.0.0.1"}
    env = {**os.environ, "PROBE_OUT": str(out), "PROBE_VALUE": "from-the-request"}
    answer = zygote.ask({"argv": ["pea", "--args-json", json.dumps(args), "--status-file", str(status),
                                  "--log-json"], "cwd": str(work), "env": env,
                         "log_path": str(tmp_path / "probe.log")})
    pid = answer["pid"]
    assert abs(answer["start_time"] - psutil.Process(pid).create_time()) < 0.5
    report = json.loads(_wait(lambda: status.exists() and status.read_text(), 60, "status file"))
    assert report["state"] == "ready", (tmp_path / "probe.log").read_text()
    value, cwd, sid, child_pid = out.read_text().split("|")
    assert (value, cwd, int(sid), int(child_pid)) == ("from-the-request", str(work), pid, pid)
    assert psutil.Process(pid).ppid() == zygote.proc.pid
    # a forked child keeps the zygote's command line; its name tells them apart
    assert (psutil.Process(pid).name(), zygote_name(zygote.proc.pid)) == ("jinad-pea", "jinad-zygote")

    os.kill(pid, signal.SIGTERM)
    _wait(lambda: not psutil.pid_exists(pid), 20, "the Pea to exit and be reaped")  # no zombie left
    assert zygote.ask({"op": "exit_code", "pid": pid}) == {"pid": pid, "exit_code": 0}


def test_failing_child_logs_to_its_file_and_is_reaped(zygote, tmp_path):
    log = tmp_path / "bad.log"
    pid = zygote.ask({"argv": ["pea", "--args-json", "{not json"], "cwd": str(tmp_path), "env": dict(os.environ),
                      "log_path": str(log)})["pid"]
    _wait(lambda: not psutil.pid_exists(pid), 20, "the child to exit and be reaped")
    assert zygote.ask({"op": "exit_code", "pid": pid})["exit_code"] == 2
    assert "--args-json is not valid JSON" in log.read_text()
    assert zygote.ask({"op": "ping"})["children"] == 0


def test_children_survive_the_zygote_being_killed(zygote, tmp_path):
    req, status = _pea_request(tmp_path, "survivor")
    pid = zygote.ask(req)["pid"]
    assert json.loads(_wait(lambda: status.exists() and status.read_text(), 60, "status"))["state"] == "ready"
    zygote.proc.kill()
    zygote.proc.wait(10)
    time.sleep(0.3)
    child = psutil.Process(pid)
    assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    assert child.ppid() != zygote.proc.pid  # re-parented, still serving its session
    child.terminate()
    child.wait(20)


@pytest.mark.parametrize("req, error", [
    ("not json at all", "not JSON"),
    ("[1, 2]", "JSON object"),
    ({"argv": []}, "argv"),
    ({"argv": ["pea", 3], "log_path": "/tmp/x.log"}, "argv"),
    ({"argv": ["pea"]}, "log_path"),
    ({"argv": ["pea"], "log_path": "/nonexistent-dir/x.log"}, "cannot open log_path"),
    ({"argv": ["pea"], "log_path": "/tmp/zyg-test.log", "cwd": "/nonexistent-dir"}, "not a directory"),
    ({"argv": ["zygote", "--socket", "/tmp/x"], "log_path": "/tmp/zyg-test.log"}, "zygotes"),
    ({"op": "exit_code", "pid": "12"}, "pid"),
    ({"op": "reboot"}, "unknown op"),
])
def test_a_bad_request_gets_an_error_answer_not_a_crash(survivor, req, error):
    zygote = survivor
    answer = zygote.ask(req)
    assert error in answer["error"]
    assert zygote.ask({"op": "ping"})["pid"] == zygote.proc.pid
    assert zygote.proc.poll() is None


def test_exit_request_and_losing_its_parent_both_end_it(zygote, tmp_path):
    assert zygote.ask({"op": "exit"}) == {"ok": True}
    assert zygote.proc.wait(10) == 0
    assert not zygote.sock.exists()

    # a zygote whose parent (the daemon) dies follows it
    sock = pathlib.Path(tempfile.mkdtemp(prefix="zyg-")) / "orphan.sock"
    starter = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'jinad_fab.launch', 'zygote', '--socket', {str(sock)!r}],"
        " start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        zpid = int(starter.stdout.readline())
        zygote.forked.append(zpid)  # killed by the fixture if this test fails
        _wait(lambda: sock.exists(), 60, "orphan zygote socket")
        starter.kill()
        starter.wait(10)
        _wait(lambda: _gone(zpid), 10, "the orphaned zygote to exit")
        assert not sock.exists()
    finally:
        starter.kill()
        starter.wait(10)
        starter.stdout.close()
        shutil.rmtree(sock.parent, ignore_errors=True)

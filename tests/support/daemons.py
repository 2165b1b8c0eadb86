"""A real `jinad` subprocess, and the clean-up of everything it started.

`Daemon` is the one way tests start a daemon, whatever its runtime (`process` or `docker`): the
`daemon_factory` fixture (tests/support/plugin.py) builds them and stops and reaps them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psutil

import jinad_fab

from .ports import free_port

REPO_PARENT = str(pathlib.Path(jinad_fab.__file__).resolve().parent.parent)

FLOW_YML = """!Flow
version: '1'
pods:
  - name: first
    uses: _logforward
  - name: second
    uses: _logforward
"""


class Daemon:
    """One `jinad` process on a free loopback port with its own home.

    The daemon sees this process's environment minus every inherited ``JINAD_*`` variable (an
    operator's own settings must not leak into a test), plus ``env``. `restart()` keeps the home,
    `kill()` is SIGKILL."""

    def __init__(self, home: pathlib.Path, token: str | None = None, extra: list[str] | None = None,
                 scheme: str = "http", verify: str | bool = True, env: dict[str, str] | None = None,
                 python: str | None = None):
        self.home = home
        self.token = token
        self.extra = extra or []
        self.scheme = scheme
        if isinstance(verify, str):  # a CA bundle: httpx wants an SSL context for it
            import ssl

            verify = ssl.create_default_context(cafile=verify)
        self.verify = verify
        self.env = dict(env or {})
        self.python = python or sys.executable
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = home.parent / f"{home.name}-daemon.log"
        self.token_file = home / "token"  # where the daemon writes one when none is given

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> Daemon:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("JINAD_")}
        env.update(PYTHONPATH=REPO_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""), PIP_NO_INDEX="1")
        env.update(self.env)
        cmd = [self.python, "-m", "jinad_fab.cli.daemon", "--port", str(self.port), "--home", str(self.home),
               "--log-level", "warning", *self.extra]
        if self.token:  # handed over in a 0600 file, as an operator would (never in argv)
            self.token_file = self.home.parent / f"{self.home.name}.token"
            self.token_file.write_text(self.token + "\n")
            self.token_file.chmod(0o600)
            cmd += ["--token-file", str(self.token_file)]
            env.pop("JINAD_TOKEN", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        # one client for the whole wait: `httpx.get` builds an SSL context per call (~30 ms of CPU),
        # which every turn would take from the daemon starting on the same cores
        with httpx.Client(timeout=1, verify=self.verify) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"jinad exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    r = http.get(self.url + "/alive")
                    # this daemon's answer, not another server's on the same port (its /alive has no daemon_id)
                    if r.status_code == 200 and "daemon_id" in r.json():
                        if not self.token and self.token_file.exists():  # the daemon wrote one on first start
                            self.token = (self.home / "token").read_text().strip()
                        return self
                time.sleep(0.05)
        raise TimeoutError(f"jinad did not answer within {timeout}s: {self.log.read_text()[-2000:]}")

    def client(self, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, timeout=60, headers=headers, verify=self.verify, **kw)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def processes_of(home: pathlib.Path) -> list[psutil.Process]:
    """Processes started for this home: anything whose command line or cwd is under it, and descendants."""
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline", "cwd", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
                continue
            text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
            if str(home) in text:
                # the daemon and its per-workspace zygotes are not objects; what they started is
                for c in [p, *p.children(recursive=True)]:
                    if not _is_helper(c):
                        found[c.pid] = c
        except psutil.Error:
            continue
    return [p for p in found.values() if _alive(p)]


def _is_helper(p: psutil.Process) -> bool:
    """The daemon or a zygote (named so; the objects it forks share its command line, not its name)."""
    try:
        cmd = " ".join(p.cmdline())
        if "jinad_fab.cli.daemon" in cmd or p.name() == "jinad-zygote":
            return True
        # a zygote the daemon is starting right now has not named itself yet: it is the daemon's own
        # child (what it forks are the zygote's children, in sessions of their own)
        parent = p.parent()
        return (" zygote --socket " in cmd and parent is not None
                and "jinad_fab.cli.daemon" in " ".join(parent.cmdline()))
    except psutil.Error:
        return False


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextlib.contextmanager
def running(d: Daemon) -> Iterator[Daemon]:
    """Start ``d`` for a block (a module's shared daemon); after it, stop it and kill whatever it left."""
    d.start()
    try:
        yield d
    finally:
        d.stop()
        reap(d.home)


def reap(home: pathlib.Path) -> list[int]:
    """Kill whatever a daemon with this home left running; returns the pids it had to kill."""
    procs = processes_of(home)
    procs += [p for p in psutil.process_iter() if _mentions(p, str(home))]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=5)
    return [p.pid for p in procs]


def wait_state(client: httpx.Client, path: str, states: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if body.get("state") in states:
            return body
        time.sleep(0.05)
    raise TimeoutError(f"{path} stayed {body.get('state')} (wanted {states}): {body}")


def upload(client: httpx.Client, files: dict[str, bytes | str], **params) -> httpx.Response:
    parts = [("files", (name, data.encode() if isinstance(data, str) else data)) for name, data in files.items()]
    return client.post("/workspaces", files=parts, params=params)


def active_workspace(client: httpx.Client, files: dict[str, bytes | str]) -> str:
    r = upload(client, files)
    assert r.status_code == 201, r.text
    ws = wait_state(client, f"/workspaces/{r.json()['id']}", {"ACTIVE", "FAILED"})
    assert ws["state"] == "ACTIVE", ws
    return ws["id"]


def _mentions(p: psutil.Process, text: str) -> bool:
    try:
        return p.pid != os.getpid() and text in " ".join(p.cmdline())
    except psutil.Error:
        return False


def files_mentioning(root: pathlib.Path, secret: str) -> list[str]:
    """Files under ``root`` holding ``secret`` in clear (a daemon's own token file excepted)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.name.endswith(".token") and path.name != "token":
            try:
                if secret.encode() in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


def assert_never_in_clear(secret: str, *daemons: Daemon) -> None:
    """What another user of the host could read: no file under each daemon's home, no daemon log
    and no process's argv holds ``secret``."""
    for d in daemons:
        assert files_mentioning(d.home, secret) == [], f"{d.home} holds the secret in clear"
        assert secret.encode() not in d.log.read_bytes()
    for p in psutil.process_iter(["cmdline"]):
        assert secret not in " ".join(p.info["cmdline"] or [])

"""Real processes for the operator toolkit's integration tests: a jinad on loopback and an
OpenSSH server on loopback, each on a random port, each stopped even when a test fails."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_jinad(home: pathlib.Path, procs: list) -> tuple[int, str]:
    port, token = free_port(), "t0ken-" + os.urandom(8).hex()
    home.mkdir(parents=True, exist_ok=True)
    log = (home.parent / f"{home.name}.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD_")}
    env["JINAD_TOKEN"] = token  # the environment, not argv (ps shows argv to every user)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from jinad_fab.cli.daemon import main; main()",
         "--port", str(port), "--home", str(home), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    procs.append((proc, log))
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/alive", timeout=1).status_code < 500:
                return port, token
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("jinad did not start:\n" + (home.parent / f"{home.name}.log").read_text()[-3000:])
        time.sleep(0.2)


@pytest.fixture
def jinads(tmp_path: pathlib.Path):
    """Start real `jinad`s on 127.0.0.1:<random> with tokens: ``start() -> (port, token)``."""
    procs: list = []

    def start() -> tuple[int, str]:
        return _start_jinad(tmp_path / f"jinad{len(procs)}", procs)

    try:
        yield start
    finally:
        for proc, log in procs:
            _stop(proc)
            log.close()


@pytest.fixture
def jinad(jinads):
    """One real `jinad`; yields (port, token)."""
    return jinads()


def _sshd() -> str | None:
    return shutil.which("sshd") or (os.path.exists("/usr/sbin/sshd") and "/usr/sbin/sshd") or None


@pytest.fixture
def sshd(tmp_path: pathlib.Path):
    """A real OpenSSH server on 127.0.0.1:<random> accepting a key generated here.

    Yields (port, user, private_key_path)."""
    binary = _sshd()
    if binary is None or os.geteuid() != 0:
        pytest.skip("needs root and openssh-server (.ci/setup.d/40-deploy.sh installs it)")
    d = tmp_path / "sshd"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True, timeout=30)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")], check=True, timeout=30)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=(d / "sshd.log").open("wb"))
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sshd did not start:\n" + (d / "sshd.log").read_text())
            time.sleep(0.1)
        yield port, "root", d / "client_key"
    finally:
        _stop(proc)

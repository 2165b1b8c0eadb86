"""Real processes for the operator toolkit's integration tests: a jinad on loopback (from the shared
`daemon_factory`, tests/support) and an OpenSSH server on loopback, each on a random port, each
stopped even when a test fails."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest

from tests.support.ports import free_port


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def jinads(daemon_factory):
    """Start real `jinad`s on 127.0.0.1:<random> with tokens: ``start() -> (port, token)``."""

    def start() -> tuple[int, str]:
        d = daemon_factory(token="t0ken-" + os.urandom(8).hex())
        return d.port, d.token

    return start


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
    with open(d / "sshd.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")],
                                stdout=subprocess.DEVNULL, stderr=log)
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

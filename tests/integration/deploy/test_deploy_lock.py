"""The deploy lock: one changing run per inventory, across processes; a second one fails naming the
holder or waits for it; a dry run never takes it; a holder killed with SIGKILL frees it."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from jinad_fab.deploy.lock import LOCK_NAME, DeployLocked, deploy_lock, read_holder
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(300)

HOLD = textwrap.dedent("""
    import sys
    from jinad_fab.deploy.lock import deploy_lock
    with deploy_lock(sys.argv[1], command="jinad-fab provision upgrade -i prod", inventory="prod"):
        print("holding", flush=True)
        sys.stdin.read()  # until the test closes our stdin
""")


def hold(lock: pathlib.Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "holding\n"
    return proc


def reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()


def jinad_fab(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jinad_fab.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def inventory(tmp_path: pathlib.Path) -> pathlib.Path:
    """One host nobody listens for: a run that gets the lock goes on to Ansible and finds it unreachable."""
    path = tmp_path / "inv" / "hosts.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"all": {"hosts": {"dark": {
        "ansible_host": "127.0.0.1", "ansible_port": free_port(), "ansible_user": "nobody",
        "ansible_ssh_common_args": "-o ConnectTimeout=3 -o StrictHostKeyChecking=no"}}}}))
    return path


def test_a_second_deploy_fails_naming_the_holder_then_runs_once_it_is_free(inventory: pathlib.Path) -> None:
    lock = inventory.parent / LOCK_NAME
    holder = hold(lock)
    try:
        busy = jinad_fab("provision", "deploy", "-i", str(inventory))
        assert busy.returncode == 2, busy.stderr
        assert f"pid {holder.pid}" in busy.stderr and "`jinad-fab provision upgrade -i prod`" in busy.stderr
        assert "--lock-wait" in busy.stderr
        assert "PLAY" not in busy.stdout + busy.stderr and "dark" not in busy.stdout  # Ansible never started

        # a dry run changes nothing, so it does not wait for the lock: it reaches the host (unreachable: 4)
        dry = jinad_fab("provision", "deploy", "-i", str(inventory), "--check", "--json")
        assert dry.returncode == 4, dry.stderr[-3000:]
        assert json.loads(dry.stdout.split("\nError")[0])["check"] is True

        # a waiting run queues behind the holder and runs when it lets go
        waiter = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.main", "provision", "deploy", "-i",
                                   str(inventory), "--lock-wait", "120", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = waiter.stderr.readline()
        assert "waiting up to 120s for the deploy lock" in first and f"pid {holder.pid}" in first
        holder.stdin.close()
        assert holder.wait(30) == 0
        out, err = waiter.communicate(timeout=240)
        assert waiter.returncode == 4, err[-3000:]  # it ran the playbook: the host is unreachable
        assert json.loads(out.split("\nError")[0])["hosts"]["dark"]["unreachable"] == 1
        assert read_holder(lock) is None  # released: the file says nobody holds it
    finally:
        reap(holder)


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: pathlib.Path) -> None:
    lock = tmp_path / LOCK_NAME
    holder = hold(lock)
    with pytest.raises(DeployLocked) as info:
        with deploy_lock(lock, command="test", inventory="inv", wait=0.3, poll=0.05):
            pass
    assert info.value.holder.pid == holder.pid and info.value.exit_code == 2
    assert "after waiting" in str(info.value)
    try:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with deploy_lock(lock, command="after", inventory="inv") as me:
            assert me.pid == os.getpid() and read_holder(lock) == me
    finally:
        reap(holder)

"""The hosts' own deploy locks: two controllers (here two inventories, each with its own
controller-side lock) naming the same host cannot change it at once. The real lock.yml runs on
this machine over Ansible's local connection, with the lock file in a temporary folder."""

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

from jinad_fab.deploy.lock import DeployLocked, LockHolder, host_locks

pytestmark = pytest.mark.timeout(600)

HOLD = textwrap.dedent("""
    import sys
    from jinad_fab.deploy.lock import LockHolder, host_locks
    holder = LockHolder(user="ops", host="laptop-2", pid=4242, command="jinad-fab provision upgrade -i prod",
                        since="2026-01-01T00:00:00Z")
    with host_locks(sys.argv[1], holder):
        print("holding", flush=True)
        sys.stdin.read()  # until the test closes our stdin (or kills us)
""")


def _inventory(folder: pathlib.Path, lock_file: pathlib.Path, install_dir: pathlib.Path) -> pathlib.Path:
    path = folder / "hosts.yml"
    folder.mkdir()
    path.write_text(yaml.safe_dump({"all": {"hosts": {"h1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "jinad_fab_become": False, "jinad_deploy_lock_file": str(lock_file),
        # rollback with no release installed fails at once, touching nothing: a harmless run to lock
        "jinad_install_dir": str(install_dir), "jinad_service_manager": "process"}}}}))
    return path


@pytest.fixture
def two_controllers(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    lock_file = tmp_path / "run" / "jinad-fab-deploy.lock"
    install = tmp_path / "opt-jinad"
    return (_inventory(tmp_path / "controller-a", lock_file, install),
            _inventory(tmp_path / "controller-b", lock_file, install), lock_file)


def jinad_fab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "jinad_fab.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def hold(inventory: pathlib.Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(inventory)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line == "holding\n", proc.stderr.read() if proc.poll() is not None else line
    return proc


def reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()


def test_a_second_controller_is_refused_naming_the_holder_and_the_holder_releases(two_controllers) -> None:
    inv_a, inv_b, lock_file = two_controllers
    me = LockHolder.me("jinad-fab provision deploy -i a")
    with host_locks(inv_a, me) as run_id:
        held = json.loads(lock_file.read_text())
        assert held["run"] == run_id and held["pid"] == os.getpid() and held["command"] == me.command
        other = LockHolder(user="ops", host="laptop-2", pid=1, command="jinad-fab provision deploy -i b",
                           since="2026-01-01T00:00:00Z")
        with pytest.raises(DeployLocked) as info:
            with host_locks(inv_b, other):
                pytest.fail("the second controller got the lock")
        assert info.value.hosts == {"h1": f"deploy lock held by {me.user}@{me.host} (pid {me.pid}, "
                                          f"`{me.command}`, since {me.since})"}
        assert info.value.exit_code == 2 and "jinad-fab provision unlock" in str(info.value)
        assert json.loads(lock_file.read_text())["run"] == run_id  # the refused run left it alone
    assert not lock_file.exists()  # released on the way out


def test_the_cli_refuses_waits_releases_after_a_failed_run_and_unlock_breaks_a_dead_holders_lock(
        two_controllers) -> None:
    inv_a, inv_b, lock_file = two_controllers
    holder = hold(inv_a)
    try:
        proc = jinad_fab("provision", "rollback", "-i", str(inv_b))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert ("h1: deploy lock held by ops@laptop-2 (pid 4242, `jinad-fab provision upgrade -i prod`, "
                "since 2026-01-01T00:00:00Z)") in proc.stderr
        assert "no previous release" not in proc.stdout + proc.stderr  # the rollback itself never ran

        # with --lock-wait it queues: the holder finishes, then the run goes on (and fails on its own)
        waiter = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.main", "provision", "rollback", "-i",
                                   str(inv_b), "--lock-wait", "120", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}"
                                                             f"{os.pathsep}{os.environ['PATH']}"})
        try:
            holder.stdin.close()  # the first run ends and releases its lock
            holder.wait(120)
            out, err = waiter.communicate(timeout=300)
        finally:
            reap(waiter)
        assert waiter.returncode == 2, out + err
        assert "There is no previous release of jinad on h1" in json.loads(out)["hosts"]["h1"]["message"]
        assert not lock_file.exists()  # released although the run failed
    finally:
        reap(holder)

    # a controller killed mid-run leaves its lock; unlock breaks it
    holder = hold(inv_a)
    holder.send_signal(signal.SIGKILL)
    reap(holder)
    assert "laptop-2" in lock_file.read_text()
    proc = jinad_fab("provision", "unlock", "-i", str(inv_b), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {"broken": ["h1"]}
    assert not lock_file.exists()
    proc = jinad_fab("provision", "unlock", "-i", str(inv_b), "--json")
    assert json.loads(proc.stdout) == {"broken": []}

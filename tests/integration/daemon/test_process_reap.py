"""What an object leaves in its process group after its leader exits is found and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil

from jinad_fab.daemon.runtimes.process import ProcessRuntime, _group_members


def test_leftovers_in_the_group_are_found_and_stopped_and_nothing_else(tmp_path):
    leader = subprocess.Popen(["sh", "-c", "sleep 120 & sleep 120 & echo started; wait"],
                              start_new_session=True, stdout=subprocess.PIPE)
    assert leader.stdout.readline() == b"started\n"
    bystander = subprocess.Popen(["sleep", "120"])  # our own group: must be left alone
    try:
        kids = psutil.Process(leader.pid).children()
        assert len(kids) == 2
        os.kill(leader.pid, signal.SIGKILL)  # the leader goes; its children stay in its group
        leader.wait(10)
        found = {p.pid for p in _group_members(leader.pid)}
        assert found == {k.pid for k in kids}
        rt = ProcessRuntime(tmp_path / "cache", {}, run_dir=tmp_path / "run")
        rt._reap_group(leader.pid, grace=5)
        deadline = time.monotonic() + 10
        while _group_members(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group_members(leader.pid) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        leader.stdout.close()

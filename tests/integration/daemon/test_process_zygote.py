"""The process runtime's zygotes: reused, replaced when they die, and a new interpreter when they cannot help."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import time

import psutil
import pytest

from jinad_fab.daemon.runtimes.base import LaunchSpec, WorkspaceContext
from jinad_fab.daemon.runtimes.process import ProcessRuntime
from jinad_fab.daemon.settings import DaemonSettings


@pytest.fixture
def rt(tmp_path):
    runtime = ProcessRuntime.from_settings(DaemonSettings(home=tmp_path / "home"))
    started: list[dict] = []
    runtime.started = started
    yield runtime
    for handle in started:
        runtime.stop(handle, timeout=5)
    runtime.close()


@pytest.fixture
def ws(rt, tmp_path):
    root = tmp_path / "ws" / "files"
    root.mkdir(parents=True)
    w = WorkspaceContext(id="jworkspace-" + "c" * 32, root=root, env_dir=tmp_path / "ws" / "env")
    w.build_info = rt.build(w, lambda src, line: None)
    return w


def _start(rt: ProcessRuntime, ws: WorkspaceContext, tmp_path: pathlib.Path, name: str,
           env: dict | None = None) -> tuple[dict, pathlib.Path]:
    status = tmp_path / f"{name}.json"
    log = tmp_path / f"{name}.log"
    spec = LaunchSpec(object_id="jpea-" + name.ljust(32, "0")[:32], kind="pea", status_file=status,
                      args={"name": name, "uses": "_logforward"}, host="127.0.0.1", env=env or {})
    handle = rt.start(ws, spec, log)
    rt.started.append(handle)
    deadline = time.monotonic() + 60
    while not status.exists():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    assert json.loads(status.read_text())["state"] == "ready", log.read_text()
    return handle, log


def _parent(handle: dict) -> psutil.Process:
    return psutil.Process(handle["pid"]).parent()


def test_one_zygote_per_workspace_replaced_when_it_dies(rt, ws, tmp_path):
    first, _ = _start(rt, ws, tmp_path, "one")
    zygote = _parent(first)
    assert zygote.name() == "jinad-zygote" and zygote.pid != os.getpid()
    second, _ = _start(rt, ws, tmp_path, "two")
    assert _parent(second).pid == zygote.pid

    zygote.send_signal(signal.SIGKILL)
    zygote.wait(10)
    assert rt.status(first).alive and rt.status(second).alive  # its children live on
    third, _ = _start(rt, ws, tmp_path, "three")
    assert _parent(third).name() == "jinad-zygote" and _parent(third).pid != zygote.pid

    # an object forked and reaped by the zygote: status says how it ended
    os.kill(third["pid"], signal.SIGTERM)
    st = rt.stop(third, timeout=10)
    assert not st.alive and st.exit_code == 0 and st.detail == "exited with code 0"


def test_interpreter_level_env_gets_a_new_interpreter(rt, ws, tmp_path):
    handle, log = _start(rt, ws, tmp_path, "pythonpath", env={"PYTHONPATH": str(tmp_path)})
    assert _parent(handle).pid == os.getpid()  # the daemon's own child, not the zygote's
    assert "PYTHONPATH must be set before the interpreter starts" in log.read_text()


def test_a_zygote_that_cannot_start_falls_back_to_a_new_interpreter(rt, ws, tmp_path):
    # the workspace's interpreter refuses to be a zygote (say, an older jinad_fab in the venv)
    wrapper = tmp_path / "python-no-zygote"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *"launch zygote"*) echo "no zygote here" >&2; exit 3;; esac\n'
                       f'exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    ws.build_info = {**ws.build_info, "python": str(wrapper)}
    first, log = _start(rt, ws, tmp_path, "fallback")
    text = log.read_text()
    assert "starting a new interpreter: its zygote failed to start" in text and "no zygote here" in text
    assert _parent(first).pid == os.getpid()
    # the failure is remembered: the next object does not wait for another zygote
    t = time.monotonic()
    _start(rt, ws, tmp_path, "fallback2")
    assert time.monotonic() - t < 60
    assert not [p for p in psutil.Process().children() if _name(p) == "jinad-zygote"]


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""

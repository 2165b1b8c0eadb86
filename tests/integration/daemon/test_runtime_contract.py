"""One contract, every runtime: the same calls on `process` (and `docker` when it is available)."""

from __future__ import annotations

import json
import os
import pathlib
import time

import psutil
import pytest

from jinad_fab.daemon.runtimes.base import BuildError, LaunchSpec, Runtime, WorkspaceContext
from jinad_fab.daemon.settings import DaemonSettings

# `docker` runs this same contract in the docker tier (tests/docker/test_docker_runtime.py imports
# these tests), with the locally built base image and every labelled resource removed afterwards.
RUNTIMES = ["process"]


def _runtime(name: str, home: pathlib.Path) -> Runtime:
    import importlib

    from jinad_fab.daemon.app import RUNTIME_MODULES

    module, cls_name = RUNTIME_MODULES[name]
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"runtime {name} is not importable: {exc}")
    rt = cls.from_settings(DaemonSettings(home=home))
    if not rt.available():
        pytest.skip(f"runtime {name} is not available on this host")
    return rt


@pytest.fixture(params=RUNTIMES)
def runtime(request, tmp_path):
    rt = _runtime(request.param, tmp_path / "home")
    yield rt
    rt.close()


def _ws(tmp_path: pathlib.Path, files: dict[str, str]) -> WorkspaceContext:
    root = tmp_path / "ws" / "files"
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return WorkspaceContext(id="jworkspace-" + "a" * 32, root=root, env_dir=tmp_path / "ws" / "env")


def _wait_status(path: pathlib.Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)
    raise TimeoutError(f"no status file {path}")


def test_build_start_status_stop_adopt(runtime, tmp_path):
    ws = _ws(tmp_path, {"requirements.txt": "# nothing\n"})
    lines: list[tuple[str, str]] = []
    ws.build_info = runtime.build(ws, lambda src, line: lines.append((src, line)))
    assert json.loads(json.dumps(ws.build_info)) == ws.build_info
    assert lines, "a build says what it does"

    status_file = tmp_path / "pea.json"
    log_path = tmp_path / "pea.log"
    spec = LaunchSpec(object_id="jpea-" + "b" * 32, kind="pea", status_file=status_file,
                      args={"name": "contract", "uses": "_logforward"}, host="127.0.0.1")
    handle = runtime.start(ws, spec, log_path)
    try:
        assert handle["runtime"] == runtime.name
        assert json.loads(json.dumps(handle)) == handle
        report = _wait_status(status_file)
        assert report["state"] == "ready", log_path.read_text()
        assert runtime.status(handle).alive
        assert runtime.adopt(dict(handle)).alive  # what a restarted daemon does with the stored handle
        assert log_path.exists()  # its stdout and stderr go there
    finally:
        st = runtime.stop(handle, timeout=10)
    assert not st.alive
    assert not runtime.status(handle).alive
    assert not runtime.stop(handle, timeout=1).alive  # idempotent
    assert not runtime.adopt(handle).alive
    runtime.remove_workspace(ws)


def _ready_object(runtime: Runtime, ws: WorkspaceContext, tmp_path: pathlib.Path, object_id: str) -> dict:
    status_file = tmp_path / f"{object_id}.json"
    spec = LaunchSpec(object_id=object_id, kind="pea", status_file=status_file,
                      args={"name": object_id[-6:], "uses": "_logforward"}, host="127.0.0.1")
    handle = runtime.start(ws, spec, tmp_path / f"{object_id}.log")
    report = _wait_status(status_file)
    assert report["state"] == "ready", (tmp_path / f"{object_id}.log").read_text()
    return handle


def test_sweep_removes_what_no_record_owns_and_nothing_else(runtime, tmp_path):
    ws = _ws(tmp_path, {"requirements.txt": "# nothing\n"})
    ws.build_info = runtime.build(ws, lambda src, line: None)
    kept_id, dropped_id = "jpea-" + "c" * 32, "jpea-" + "d" * 32
    kept = _ready_object(runtime, ws, tmp_path, kept_id)
    dropped = _ready_object(runtime, ws, tmp_path, dropped_id)
    other = type(runtime).from_settings(DaemonSettings(home=tmp_path / "another-daemon"))
    try:
        # another daemon on the same host owns none of them: its sweep leaves them alone
        assert other.sweep(set(), set()) == []
        assert runtime.status(kept).alive and runtime.status(dropped).alive

        removed = runtime.sweep(live_objects={kept_id}, live_workspaces={ws.id})
        assert [r for r in removed if dropped_id in r] and not [r for r in removed if kept_id in r], removed
        assert not runtime.status(dropped).alive
        assert runtime.status(kept).alive

        removed = runtime.sweep(live_objects=set(), live_workspaces=set())  # the workspace is gone too
        assert [r for r in removed if kept_id in r], removed
        assert not runtime.status(kept).alive
        assert runtime.sweep(live_objects=set(), live_workspaces=set()) == []  # nothing left to find
    finally:
        other.close()
        for handle in (kept, dropped):
            runtime.stop(handle, timeout=5)
        runtime.remove_workspace(ws)


def test_failed_build_raises_build_error(runtime, tmp_path):
    ws = _ws(tmp_path, {"requirements.txt": "--no-index\nsurely-not-a-package-jfab==1.0\n"})
    with pytest.raises(BuildError) as err:
        runtime.build(ws, lambda src, line: None)
    assert "requirements" in err.value.reason or "pip" in err.value.reason


def test_adopt_refuses_a_reused_pid(tmp_path):
    rt = _runtime("process", tmp_path / "home")
    me = psutil.Process(os.getpid())
    wrong = {"runtime": "process", "pid": me.pid, "pgid": me.pid, "start_time": me.create_time() - 3600}
    st = rt.adopt(wrong)
    assert not st.alive and "another process" in st.detail
    gone = {"runtime": "process", "pid": 2 ** 22 + 12345, "pgid": 0, "start_time": 0}
    assert not rt.adopt(gone).alive

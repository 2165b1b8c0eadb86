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
    args = {"name": "contract", "uses": "_logforward", "host": "127.0.0.1", "workspace": str(ws.root)}
    spec = LaunchSpec(object_id="jpea-" + "b" * 32, kind="pea", status_file=status_file,
                      runtime_args=["pea", "--args-json", json.dumps(args), "--status-file", str(status_file),
                                    "--log-json"])
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

"""Builds are supervised: a restarted daemon kills the build it left running before building again,
deleting a workspace kills its build and leaves nothing behind, the build queue's cap holds under
concurrent creates, and a workspace venv sees the daemon's own dependencies.

The slow build is real pip installing a local package whose (in-tree, PEP 517) build backend
records its pid and then sleeps: the process a daemon must not orphan or run twice.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import time

import psutil

from tests.support.daemons import FLOW_YML, active_workspace, upload, wait_state


def _slow_workspace(pids: pathlib.Path) -> dict[str, str | bytes]:
    backend = f"""
import os, time

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open({str(pids)!r}, "a") as fh:
        fh.write(f"{{os.getpid()}}\\n")
    time.sleep(90)
    raise RuntimeError("slow on purpose")
"""
    return {
        "flow.yml": FLOW_YML,
        "requirements.txt": "./slowpkg\n",
        "slowpkg/pyproject.toml": ('[build-system]\nrequires = []\nbuild-backend = "slow_backend"\nbackend-path = ["."]\n'
                                   '[project]\nname = "slowpkg"\nversion = "1"\n'),
        "slowpkg/slow_backend.py": backend,
    }


def _pids(path: pathlib.Path, n: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(x) for x in path.read_text().split()] if path.exists() else []
        if len(pids) >= n:
            return pids
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not get {n} pids")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _running(pid)


def test_a_restarted_daemon_kills_the_build_it_left_behind_before_building_again(daemon_factory, tmp_path):
    pids = tmp_path / "backend.pids"
    jinad = daemon_factory()
    with jinad.client() as c:
        r = upload(c, _slow_workspace(pids))
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        first = _pids(pids, 1)[0]
        jinad.kill()  # SIGKILL mid-build: the build's processes live on, in their own session
        assert _running(first)
        jinad.start()
    with jinad.client() as c:
        # the second daemon builds again, but only once the first build is dead: never two at once
        first_again, second = _pids(pids, 2)
        assert first_again == first and second != first
        assert not _running(first)
        assert c.get(f"/workspaces/{wid}").json()["state"] == "BUILDING"
        restarted = [json.loads(line)["msg"] for line in c.get(f"/logs/{wid}").text.splitlines()
                     if "the daemon restarted during this build" in line]
        assert len(restarted) == 1 and "killed what was left of it" in restarted[0]
        assert str(first) in restarted[0]
        # and a SIGKILL of the second daemon, then a third: still one build at a time
        jinad.kill()
        assert _running(second)
        jinad.start()
        third = _pids(pids, 3)[2]
        assert not _running(second) and _running(third)
        assert c.delete(f"/workspaces/{wid}").status_code == 204
        assert _wait_gone(third)


def test_deleting_a_workspace_mid_build_kills_the_build_and_leaves_nothing(daemon_factory, tmp_path):
    pids = tmp_path / "backend.pids"
    jinad = daemon_factory(env={"JINAD_BUILD_WORKERS": "1"})
    with jinad.client() as c:
        wid = upload(c, _slow_workspace(pids)).json()["id"]
        backend = _pids(pids, 1)[0]
        pip = psutil.Process(backend).parent()
        assert c.delete(f"/workspaces/{wid}").status_code == 204
        assert _wait_gone(backend) and _wait_gone(pip.pid)
        assert c.get(f"/workspaces/{wid}").status_code == 404
        # with one build worker, the next workspace's build proves the cancelled one has ended
        active_workspace(c, {"flow.yml": FLOW_YML})
        leftovers = [p for p in jinad.home.rglob("*") if wid in str(p)]
        assert leftovers == []
        assert c.get(f"/logs/{wid}").status_code == 404


def test_the_build_queue_cap_holds_under_concurrent_creates(daemon_factory, tmp_path):
    cap, tries = 3, 24
    jinad = daemon_factory(env={"JINAD_MAX_QUEUED_BUILDS": str(cap), "JINAD_BUILD_WORKERS": "1"})
    files = _slow_workspace(tmp_path / "backend.pids")
    # an archive of many files, so that staging takes a moment: requests overlap while staged
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(900):
            data = os.urandom(64)
            info = tarfile.TarInfo(f"data/{i}.bin")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    files["data.tar.gz"] = buf.getvalue()

    def create(_: int) -> int:
        with jinad.client() as c:
            return upload(c, files).status_code

    with concurrent.futures.ThreadPoolExecutor(tries) as pool:
        codes = list(pool.map(create, range(tries)))
    assert sorted(set(codes)) == [201, 503], codes
    assert codes.count(201) == cap, codes
    with jinad.client() as c:
        items = c.get("/workspaces").json()["items"]
        assert len(items) == cap
        for ws in items:
            assert c.delete(f"/workspaces/{ws['id']}").status_code == 204


def test_a_workspace_venv_sees_the_daemons_own_dependencies(daemon_factory, tmp_path):
    """The daemon runs from a virtualenv whose site-packages hold a dependency the base interpreter
    lacks (as pyzmq is when jinad-fab is `pip install -e`d into a venv): an object's venv sees it."""
    venv = tmp_path / "daemon-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    pathlib.Path(site, "jfab_daemon_only_dep.py").write_text("ANSWER = 42\n")
    executor = ("from jinad_fab import Executor, requests\nimport jfab_daemon_only_dep\n\n"
                "class NeedsDep(Executor):\n    @requests\n    def foo(self, docs, **kw):\n"
                "        for d in docs:\n            d.tags['answer'] = jfab_daemon_only_dep.ANSWER\n")
    jinad = daemon_factory(python=str(py))
    with jinad.client() as c:
        wid = active_workspace(c, {"executor.py": executor})
        ws_py = jinad.home / "workspaces" / wid / "env" / "venv" / "bin" / "python"
        out = subprocess.run([str(ws_py), "-c", "import jfab_daemon_only_dep as d; print(d.ANSWER)"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "42", out.stderr
        r = c.post("/pods", params={"workspace_id": wid},
                   json={"name": "p", "uses": "NeedsDep", "py_modules": ["executor.py"]})
        assert r.status_code == 201, r.text
        assert wait_state(c, f"/pods/{r.json()['id']}", {"RUNNING", "FAILED"})["state"] == "RUNNING"

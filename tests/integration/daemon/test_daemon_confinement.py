"""Nothing outside a workspace is imported or read: every path a Flow, Pod or Pea names is
resolved inside it, by the loader, and refused with 400 naming the path otherwise.

Each variant points at a canary module outside the workspace that writes a file when imported."""

from __future__ import annotations

import json

import pytest

from tests.support.daemons import Daemon, active_workspace, running

CANARY = """import pathlib
pathlib.Path(__file__).with_name("PWNED").write_text("imported")
from jinad_fab import Executor

class Canary(Executor):
    pass
"""


UP = "../" * 5 + "outside/canary.py"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("confinement")


@pytest.fixture(scope="module")
def jinad(base):
    """One daemon for the module: each case only adds a workspace of its own and must be refused
    (or, inside the workspace, load); a canary that was imported stays, and fails every later case
    too. A start per case cost ~1.5 s of CPU each."""
    with running(Daemon(base / "jinad")) as d:
        yield d


@pytest.fixture(scope="module")
def outside(base):
    d = base / "outside"  # beside the daemon's home, where the ../ variant climbs to
    d.mkdir()
    (d / "canary.py").write_text(CANARY)
    (d / "canary.yml").write_text(f"jtype: Canary\npy_modules: [{d / 'canary.py'}]\n")
    return d


def _variants(outside):
    abs_mod = str(outside / "canary.py")
    return {
        "executor YAML py_modules absolute": (
            {"exec.yml": f"jtype: Canary\npy_modules: [{abs_mod}]\n"}, "pods", {"uses": "exec.yml"}, abs_mod),
        # from <tmp>/jinad/workspaces/<id>/files/conf up to <tmp>, then into outside/
        "executor YAML py_modules ../": (
            {"conf/exec.yml": f"jtype: Canary\npy_modules: [{UP}]\n"}, "pods", {"uses": "conf/exec.yml"}, UP),
        "Flow YAML Pod-level py_modules": (
            {"flow.yml": f"!Flow\nversion: '1'\npods:\n  - name: c\n    uses: Canary\n    py_modules: [{abs_mod}]\n"},
            "flows", None, abs_mod),
        "Flow YAML uses: /abs/path.yml": (
            {"flow.yml": f"!Flow\nversion: '1'\npods:\n  - name: c\n    uses: {outside / 'canary.yml'}\n"},
            "flows", None, str(outside / "canary.yml")),
        "POST /pods uses dict": (
            {"x.txt": "x"}, "pods", {"uses": {"jtype": "Canary", "py_modules": [abs_mod]}}, abs_mod),
        "POST /pods inline YAML": (
            {"x.txt": "x"}, "pods", {"uses": f"jtype: Canary\npy_modules: [{abs_mod}]\n"}, abs_mod),
        "POST /pods py_modules": (
            {"x.txt": "x"}, "pods", {"uses": "Canary", "py_modules": [abs_mod]}, "outside/canary.py'"),
    }


@pytest.mark.parametrize("variant", ["executor YAML py_modules absolute", "executor YAML py_modules ../",
                                     "Flow YAML Pod-level py_modules", "Flow YAML uses: /abs/path.yml",
                                     "POST /pods uses dict", "POST /pods inline YAML", "POST /pods py_modules"])
def test_a_path_outside_the_workspace_is_refused_and_never_imported(jinad, outside, variant):
    files, route, body, named = _variants(outside)[variant]
    with jinad.client() as c:
        wid = active_workspace(c, files)
        if route == "flows":
            r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"})
        else:
            r = c.post("/pods", params={"workspace_id": wid}, json=body)
        assert r.status_code == 400, (r.status_code, r.text)
        assert named in r.json()["detail"], r.text
        assert c.get("/pods").json()["items"] == [] or all(
            p["state"] != "RUNNING" for p in c.get("/pods").json()["items"])
    assert not (outside / "PWNED").exists()


def test_the_same_files_inside_the_workspace_load(jinad):
    """The confinement refuses only what escapes: the canary inside the workspace is imported."""
    inside = CANARY.replace('with_name("PWNED")', 'with_name("LOADED")')
    with jinad.client() as c:
        wid = active_workspace(c, {"conf/canary.py": inside, "conf/exec.yml": "jtype: Canary\npy_modules: [canary.py]\n",
                                   "flow.yml": "!Flow\nversion: '1'\npods:\n  - name: c\n    uses: conf/exec.yml\n"})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"})
        assert r.status_code == 201, r.text
        assert c.delete(f"/flows/{r.json()['id']}").status_code == 200
    (loaded,) = list(jinad.home.rglob("LOADED"))
    assert loaded.read_text() == "imported"


def test_a_pod_may_not_lift_the_confinement_through_its_env(jinad, outside):
    with jinad.client() as c:
        wid = active_workspace(c, {"x.txt": "x"})
        r = c.post("/pods", params={"workspace_id": wid},
                   json={"uses": "_pass", "env": {"JINAD_FAB_CONFINE": "/"}})
        assert r.status_code == 400 and "JINAD_FAB_CONFINE" in r.json()["detail"]
        flow = "!Flow\nversion: '1'\npods:\n  - name: c\n    uses: _pass\n    env: {JINAD_FAB_CONFINE: /}\n"
        wid = active_workspace(c, {"flow.yml": flow})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"})
        assert r.status_code == 400 and "JINAD_FAB_CONFINE" in json.dumps(r.json())

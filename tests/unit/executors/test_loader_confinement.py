"""The loader itself keeps every path inside the directory a daemon's object is confined to."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jinad_fab.executors import loader
from jinad_fab.executors.loader import (
    OutsideWorkspace,
    confine,
    executor_spec,
    import_py_modules,
    load_executor,
)

CANARY = 'import pathlib\npathlib.Path(__file__).with_name("PWNED").write_text("x")\n'


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.delenv(loader.CONFINE_ENV, raising=False)
    root = tmp_path / "ws"
    (root / "conf").mkdir(parents=True)
    out = tmp_path / "outside"
    out.mkdir()
    (out / "canary.py").write_text(CANARY)
    (out / "canary.yml").write_text(f"jtype: _pass\npy_modules: [{out / 'canary.py'}]\n")
    confine(root)
    yield root, out
    confine(None)


def test_py_modules_outside_are_refused_before_import(ws):
    root, out = ws
    for path, base in ((str(out / "canary.py"), str(root)), ("../../outside/canary.py", str(root / "conf"))):
        with pytest.raises(OutsideWorkspace, match="outside the workspace"):
            import_py_modules([path], base)
    (root / "conf" / "link.py").symlink_to(out / "canary.py")  # a symlink is followed, then judged
    with pytest.raises(OutsideWorkspace, match="link.py"):
        import_py_modules(["link.py"], str(root / "conf"))
    assert not (out / "PWNED").exists()


def test_nested_yaml_and_inline_forms_are_confined(ws):
    root, out = ws
    with pytest.raises(OutsideWorkspace, match="canary.yml"):
        executor_spec(str(out / "canary.yml"), str(root))
    (root / "conf" / "ok.yml").write_text(f"jtype: _pass\npy_modules: [{out / 'canary.py'}]\n")
    for uses in ("conf/ok.yml", {"jtype": "_pass", "py_modules": [str(out / "canary.py")]},
                 f"jtype: _pass\npy_modules: [{out / 'canary.py'}]\n"):
        with pytest.raises(OutsideWorkspace):
            load_executor(uses, base_dir=str(root))
    assert not (out / "PWNED").exists()
    (root / "conf" / "mine.py").write_text("X = 1\n")
    (root / "conf" / "mine.yml").write_text("jtype: _pass\npy_modules: [mine.py]\n")
    assert type(load_executor("conf/mine.yml", base_dir=str(root))).__name__  # inside: loads


def test_children_inherit_the_confinement_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.delenv(loader.CONFINE_ENV, raising=False)
    (tmp_path / "ws" / "sub").mkdir(parents=True)
    code = ("import os, subprocess, sys\nfrom jinad_fab.executors.loader import confinement\n"
            "print(confinement())\nos.chdir('sub')\n"
            "subprocess.run([sys.executable, '-c', 'from jinad_fab.executors.loader import confinement; "
            "print(confinement())'])\n")
    env = dict(os.environ, JINAD_FAB_CONFINE=".")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "ws", env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == [str((tmp_path / "ws").resolve())] * 2

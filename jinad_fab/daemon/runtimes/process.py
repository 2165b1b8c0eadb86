"""The ``process`` runtime: one venv per workspace, each object a subprocess in its own session.

The venv is created with ``--system-site-packages`` and without its own pip: the host's packages
(numpy, pyzmq, this package) are visible, so an empty or already-satisfied ``requirements.txt``
builds in well under a second, and ``python -m pip`` inside the venv is the host's pip installing
into the venv. A ``.pth`` file makes the daemon's own ``jinad_fab`` importable even when it runs
from a source checkout. pip's cache is shared by every workspace of the daemon.

Handles are ``{"pid", "start_time", "pgid"}``: a pid alone could be reused after a reboot or a long
downtime, pid + process start time cannot.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import psutil

from ...errors import BadConfig
from . import gpus
from .base import BuildError, BuildLog, LaunchSpec, ObjectStatus, Runtime, StartError, WorkspaceContext

_START_TIME_TOLERANCE = 0.5  # seconds; psutil derives start times from clock ticks


def _package_parent() -> pathlib.Path:
    import jinad_fab

    return pathlib.Path(jinad_fab.__file__).resolve().parent.parent


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, cache_dir: pathlib.Path, base_env: Mapping[str, str], *,
                 pip_args: list[str] | None = None, build_timeout: float = 1800.0,
                 python: str | None = None):
        self.cache_dir = cache_dir
        self.base_env = dict(base_env)
        self.pip_args = list(pip_args or [])
        self.build_timeout = build_timeout
        self.python = python or sys.executable
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> ProcessRuntime:
        return cls(settings.home / "cache", settings.child_environment(), pip_args=settings.pip_index_args,
                   build_timeout=settings.build_timeout)

    # ---- environment --------------------------------------------------------------------------

    def available(self) -> bool:
        return os.path.exists(self.python)

    def _interpreter(self, config: Mapping[str, Any]) -> str:
        wanted = str(config.get("python", "") or "").strip()
        if not wanted:
            return self.python
        if wanted.replace(".", "").isdigit():
            if wanted == "3" or f"{sys.version_info.major}.{sys.version_info.minor}".startswith(wanted):
                return self.python
            found = shutil.which(f"python{wanted}")
        else:
            found = shutil.which(wanted)
        if not found:
            raise BuildError(f".jinad asks for python {wanted!r}, which is not installed on this host")
        return found

    def _venv_python(self, venv: pathlib.Path) -> pathlib.Path:
        return venv / "bin" / "python"

    def build(self, workspace: WorkspaceContext, log: BuildLog) -> dict[str, Any]:
        base = self._interpreter(workspace.config)
        venv = workspace.env_dir / "venv"
        py = self._venv_python(venv)
        cfg = venv / "pyvenv.cfg"
        if cfg.exists() and workspace.build_info.get("base_python") != base:
            log("jinad", f"interpreter changed to {base}; recreating the venv")
            shutil.rmtree(venv, ignore_errors=True)
        if not py.exists():
            log("jinad", f"creating a venv with {base}")
            self._run([base, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                      workspace.root, log, "venv", timeout=300)
        same_python = base == self.python
        if same_python:
            site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
            site.mkdir(parents=True, exist_ok=True)
            (site / "_jinad_fab_host.pth").write_text(str(_package_parent()) + "\n")
        req_name = str(workspace.config.get("requirements") or "requirements.txt")
        req = workspace.root / req_name
        if req.is_file():
            log("jinad", f"installing {req_name} with pip")
            cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                   "-r", req_name, *self.pip_args]
            self._run(cmd, workspace.root, log, "pip", timeout=self.build_timeout,
                      extra_env={"PIP_CACHE_DIR": str(self.cache_dir / "pip")})
        else:
            log("jinad", f"no {req_name}; nothing to install")
        check = subprocess.run([str(py), "-c", "import jinad_fab.runtime"], cwd=workspace.root,
                               env=self._env(venv), capture_output=True, text=True, timeout=120)
        if check.returncode != 0:
            tail = (check.stderr or check.stdout).strip().splitlines()[-1:] or ["(no output)"]
            log("jinad", f"warning: jinad_fab.runtime is not importable in the venv: {tail[0]}")
        return {"python": str(py), "venv": str(venv), "base_python": base}

    def _env(self, venv: pathlib.Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(self.base_env)
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)
        env.update(extra or {})
        return env

    def _run(self, cmd: list[str], cwd: pathlib.Path, log: BuildLog, source: str, *, timeout: float,
             extra_env: Mapping[str, str] | None = None) -> None:
        venv = pathlib.Path(cmd[-1]) if source == "venv" else pathlib.Path(cmd[0]).parent.parent
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=self._env(venv, extra_env), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", start_new_session=True, close_fds=True)
        except OSError as exc:
            raise BuildError(f"cannot run {cmd[0]}: {exc}") from exc
        timer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log(source, line.rstrip("\n"))
            rc = proc.wait()
        finally:
            timer.cancel()
        if rc != 0:
            what = "pip install -r requirements.txt" if source == "pip" else " ".join(cmd[1:3])
            if rc < 0:
                raise BuildError(f"{what} was killed (timeout {timeout:g}s or signal {-rc})")
            raise BuildError(f"{what} failed with exit code {rc}")

    def remove_workspace(self, workspace: WorkspaceContext) -> None:
        shutil.rmtree(workspace.env_dir / "venv", ignore_errors=True)

    # ---- objects ------------------------------------------------------------------------------

    def start(self, workspace: WorkspaceContext, spec: LaunchSpec, log_path: pathlib.Path) -> dict[str, Any]:
        py = workspace.build_info.get("python")
        if not py or not os.path.exists(py):
            raise StartError(f"workspace {workspace.id} has no built environment")
        venv = pathlib.Path(workspace.build_info.get("venv") or pathlib.Path(py).parent.parent)
        env = self._env(venv, spec.env)
        try:
            cuda = gpus.cuda_visible_devices(gpus.parse(spec.gpus))
        except BadConfig as exc:
            raise StartError(str(exc)) from exc
        if cuda is not None and "CUDA_VISIBLE_DEVICES" not in spec.env:
            env["CUDA_VISIBLE_DEVICES"] = cuda  # the same GPUs a docker object would get
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            proc = subprocess.Popen(
                [py, "-m", "jinad_fab.runtime", *spec.runtime_args], cwd=workspace.root,
                env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise StartError(f"cannot start {spec.kind}: {exc}") from exc
        finally:
            os.close(fd)
        with self._lock:
            self._children[proc.pid] = proc
        try:
            start_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            start_time = 0.0  # already gone; status() will say so
        return {"runtime": self.name, "pid": proc.pid, "pgid": proc.pid, "start_time": start_time}

    def status(self, handle: dict[str, Any]) -> ObjectStatus:
        pid = int(handle.get("pid") or 0)
        if pid <= 0:
            return ObjectStatus(alive=False, detail="never started")
        with self._lock:
            child = self._children.get(pid)
        if child is not None:
            rc = child.poll()
            if rc is None:
                return ObjectStatus(alive=True)
            return ObjectStatus(alive=False, exit_code=rc, detail=_describe_exit(rc))
        try:
            proc = psutil.Process(pid)
            same = abs(proc.create_time() - float(handle.get("start_time", 0))) < _START_TIME_TOLERANCE
            if not same:
                return ObjectStatus(alive=False, detail=f"process {pid} vanished (its pid now belongs to another process)")
            if proc.status() == psutil.STATUS_ZOMBIE:
                return ObjectStatus(alive=False, detail=f"process {pid} exited")
            return ObjectStatus(alive=True)
        except psutil.NoSuchProcess:
            return ObjectStatus(alive=False, detail=f"process {pid} vanished")
        except psutil.Error as exc:
            return ObjectStatus(alive=False, detail=f"process {pid} cannot be inspected: {exc}")

    def adopt(self, handle: dict[str, Any]) -> ObjectStatus:
        return self.status(handle)

    def stop(self, handle: dict[str, Any], timeout: float) -> ObjectStatus:
        pid = int(handle.get("pid") or 0)
        pgid = int(handle.get("pgid") or pid)
        st = self.status(handle)
        if st.alive:
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                st = self.status(handle)
                if not st.alive:
                    break
                time.sleep(0.005)
            else:
                _signal(pid, signal.SIGKILL)
                st = self._wait_dead(handle, 2.0)
        if pgid > 0:
            self._reap_group(pgid, grace=min(timeout, 2.0))
        with self._lock:
            child = self._children.pop(pid, None)
        if child is not None:
            try:
                child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        return st

    def _wait_dead(self, handle: dict[str, Any], timeout: float) -> ObjectStatus:
        deadline = time.monotonic() + timeout
        st = self.status(handle)
        while st.alive and time.monotonic() < deadline:
            time.sleep(0.01)
            st = self.status(handle)
        return st

    def _reap_group(self, pgid: int, grace: float) -> None:
        """Whatever the leader left behind in its process group gets SIGTERM, then SIGKILL."""
        members = _group_members(pgid)
        if not members:
            return
        for p in members:
            _signal(p.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(members, timeout=grace)
        for p in alive:
            _signal(p.pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=1)


def _group_members(pgid: int) -> list[psutil.Process]:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with code {rc}"

"""The ``process`` runtime: one venv per workspace, each object a subprocess in its own session.

The venv is created with ``--system-site-packages`` and without its own pip: the host's packages
(numpy, pyzmq, this package) are visible, so an empty or already-satisfied ``requirements.txt``
builds in well under a second, and ``python -m pip`` inside the venv is the host's pip installing
into the venv. A ``.pth`` file makes the daemon's own ``jinad_fab`` importable even when it runs
from a source checkout. pip's cache is shared by every workspace of the daemon.

Objects are forked from a per-workspace zygote (:mod:`.zygotes`, started with its venv's interpreter
at the end of the build, before the workspace is ACTIVE, and in the background for ACTIVE
workspaces when the daemon starts, so the first object does not wait for it): a few milliseconds instead of an interpreter's start-up and
imports. When the zygote cannot be used (it does not come up, it died, the object needs
interpreter-level environment such as ``PYTHONPATH``), the object is started as a new interpreter,
and its log says why. Either way the object is a session leader that outlives the daemon.

Handles are ``{"pid", "start_time", "pgid"}``: a pid alone could be reused after a reboot or a long
downtime, pid + process start time cannot. A forked object is not the daemon's child, so its
status comes from psutil (a zombie counts as exited), as for objects re-adopted after a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

import psutil

from ... import gpus
from ...errors import BadConfig
from ...launch.command import MODULE as LAUNCH_MODULE
from .. import logs
from . import buildproc
from .base import BuildError, BuildLog, LaunchSpec, ObjectStatus, Runtime, StartError, WorkspaceContext
from .zygotes import MAX_SOCKET_PATH, Zygote, ZygoteError, ZygoteUnsure

log = logging.getLogger("jinad")

_START_TIME_TOLERANCE = 0.5  # seconds; psutil derives start times from clock ticks
_ZYGOTE_START_TIMEOUT = 30.0
# read by the interpreter or the dynamic loader before any of our code runs: a fork cannot apply them
_STARTUP_ENV = ("PYTHON", "LD_")



def _package_parent() -> pathlib.Path:
    import jinad_fab

    return pathlib.Path(jinad_fab.__file__).resolve().parent.parent


def _host_pth() -> str:
    """A ``.pth`` file for a workspace venv: the daemon's own ``jinad_fab`` and its dependencies,
    however it was installed. ``--system-site-packages`` only shows the *base* interpreter's
    packages: a daemon installed in a virtualenv (with ``pip install -e`` its ``jinad_fab`` is a
    checkout, elsewhere than its dependencies) has them in its own site directories, which are added
    with ``site.addsitedir`` so their own ``.pth`` files (editable installs' finders) work too.
    They come after the venv's own packages: a workspace's requirements still win."""
    import site

    lines = [str(_package_parent())]
    base = {os.path.realpath(d) for d in site.getsitepackages([sys.base_prefix, sys.base_exec_prefix])}
    for d in dict.fromkeys(site.getsitepackages()):  # (a user site is visible in the venv already)
        if os.path.isdir(d) and os.path.realpath(d) not in base:
            lines.append(f"import site; site.addsitedir({d!r})")
    return "\n".join(lines) + "\n"


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, cache_dir: pathlib.Path, base_env: Mapping[str, str], *,
                 pip_args: list[str] | None = None, build_timeout: float = 1800.0,
                 python: str | None = None, run_dir: pathlib.Path | None = None, zygotes: bool = True):
        self.cache_dir = cache_dir
        self.base_env = dict(base_env)
        self.pip_args = list(pip_args or [])
        self.build_timeout = build_timeout
        self.python = python or sys.executable
        self.run_dir = run_dir or cache_dir.parent / "runtimes" / self.name
        """Zygotes' logs (and sockets, when the path is short enough for a unix socket)."""
        self.use_zygotes = zygotes
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._zygotes: dict[str, Zygote] = {}
        self._zygote_locks: dict[str, threading.Lock] = {}
        self._zygote_failed: dict[str, str] = {}
        self._forked: dict[int, Zygote] = {}  # pid -> the zygote that forked it (it knows the exit code)
        self._socket_dir: pathlib.Path | None = None
        self.objects_dir = self.run_dir / "objects"
        """One small file per object started and not yet stopped (its handle): what a sweep checks
        against the daemon's records, as docker checks its labelled containers."""
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any) -> ProcessRuntime:
        return cls(settings.home / "cache", settings.child_environment(), pip_args=settings.pip_index_args,
                   build_timeout=settings.build_timeout, run_dir=settings.home / "runtimes" / cls.name)

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
        self._drop_zygote(workspace.id)  # it imported the old venv's packages
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
                      workspace.root, log, "venv", timeout=300, record=workspace.record_build)
        same_python = base == self.python
        if same_python:
            site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
            site.mkdir(parents=True, exist_ok=True)
            (site / "_jinad_fab_host.pth").write_text(_host_pth())
        req_name = str(workspace.config.get("requirements") or "requirements.txt")
        req = workspace.root / req_name
        if req.is_file():
            log("jinad", f"installing {req_name} with pip")
            cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                   "-r", req_name, *self.pip_args]
            self._run(cmd, workspace.root, log, "pip", timeout=self.build_timeout,
                      extra_env={"PIP_CACHE_DIR": str(self.cache_dir / "pip")}, record=workspace.record_build)
        else:
            log("jinad", f"no {req_name}; nothing to install")
        check = subprocess.run([str(py), "-c", "import jinad_fab.launch"], cwd=workspace.root,
                               env=self._env(venv), capture_output=True, text=True, timeout=120)
        if check.returncode != 0:
            tail = (check.stderr or check.stdout).strip().splitlines()[-1:] or ["(no output)"]
            log("jinad", f"warning: jinad_fab.launch is not importable in the venv: {tail[0]}")
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
             extra_env: Mapping[str, str] | None = None, record: buildproc.Record | None = None) -> None:
        venv = pathlib.Path(cmd[-1]) if source == "venv" else pathlib.Path(cmd[0]).parent.parent
        try:
            proc = buildproc.popen(cmd, cwd=cwd, env=self._env(venv, extra_env), record=record)
        except OSError as exc:
            raise BuildError(f"cannot run {cmd[0]}: {exc}") from exc
        assert proc.stdout is not None
        timer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
        timer.start()
        try:
            with proc.stdout:  # closed here, not by the garbage collector (a ResourceWarning)
                for line in proc.stdout:
                    log(source, line.rstrip("\n"))
            rc = proc.wait()
        finally:
            timer.cancel()
            if record is not None:
                record(None)
        if rc != 0:
            what = "pip install -r requirements.txt" if source == "pip" else " ".join(cmd[1:3])
            if rc < 0:
                raise BuildError(f"{what} was killed (timeout {timeout:g}s or signal {-rc})")
            raise BuildError(f"{what} failed with exit code {rc}")

    def remove_workspace(self, workspace: WorkspaceContext) -> None:
        self._drop_zygote(workspace.id)
        with contextlib.suppress(FileNotFoundError):
            self._zygote_log(workspace.id).unlink()
        shutil.rmtree(workspace.env_dir / "venv", ignore_errors=True)

    def sweep(self, live_objects: set[str], live_workspaces: set[str]) -> list[str]:
        """Stop the objects this runtime started whose record is gone (it keeps their handles in
        ``objects_dir``; pid + start time make sure a reused pid is never signalled), and the
        zygotes of workspaces that are gone."""
        removed = []
        with self._lock:
            zygote_workspaces = [wid for wid in self._zygotes if wid not in live_workspaces]
        for wid in zygote_workspaces:
            self._drop_zygote(wid)
            removed.append(f"zygote {wid}")
        for path in sorted(self.objects_dir.glob("*.json")):
            try:
                handle = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if handle.get("object_id") in live_objects:
                continue
            if self.status(handle).alive:
                self.stop(handle, timeout=5.0)
                removed.append(f"process {handle.get('pid')} ({handle.get('object_id')})")
            path.unlink(missing_ok=True)
        with self._lock:
            for pid in [p for p, child in self._children.items() if child.poll() is not None]:
                del self._children[pid]
        return removed

    def prepare(self, workspace: WorkspaceContext, *, wait: bool = False) -> None:
        """Start the workspace's zygote now (``wait``: before returning; else in a background
        thread) rather than on its first object."""
        py = workspace.build_info.get("python")
        if not self.use_zygotes or not py or not os.path.exists(py):
            return
        venv = pathlib.Path(workspace.build_info.get("venv") or pathlib.Path(py).parent.parent)

        def warm() -> None:
            try:
                self._zygote_for(workspace, py, self._env(venv))
            except ZygoteError:
                pass  # recorded by _zygote_for; objects then start as new interpreters, and say why
            except Exception:  # a background thread: log it, the first start will try again
                log.exception("warming the zygote of %s failed", workspace.id)

        if wait:
            warm()
        else:
            threading.Thread(target=warm, name=f"zygote-{workspace.id}", daemon=True).start()

    def close(self) -> None:
        """Daemon shutdown: stop the zygotes (the objects they forked keep running)."""
        with self._lock:
            self._closed = True
            zygotes = list(self._zygotes.values())
            self._zygotes.clear()
        for z in zygotes:
            z.close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        else:  # one a previous run of the daemon left behind (it was killed)
            with contextlib.suppress(OSError):
                _private_dir_name(self.run_dir).rmdir()

    # ---- zygotes ------------------------------------------------------------------------------

    def _zygote_log(self, wid: str) -> pathlib.Path:
        return self.run_dir / f"zygote-{wid}.log"

    def _zygote_socket(self, wid: str) -> pathlib.Path:
        name = f"z-{hashlib.sha1(wid.encode()).hexdigest()[:16]}.sock"
        path = self.run_dir / name
        if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
            return path
        with self._lock:  # a deep home (a test's tmp dir): a private 0700 directory in /tmp instead
            if self._socket_dir is None:
                self._socket_dir = _private_dir(self.run_dir)
        return self._socket_dir / name

    def _zygote_for(self, workspace: WorkspaceContext, py: str, env: Mapping[str, str]) -> Zygote:
        """The workspace's running zygote, launched now if there is none. Raises ZygoteError."""
        wid = workspace.id
        with self._lock:
            lock = self._zygote_locks.setdefault(wid, threading.Lock())
        with lock:
            if wid in self._zygote_failed:
                raise ZygoteError(self._zygote_failed[wid])
            if self._closed:
                raise ZygoteError("the daemon is shutting down")
            z = self._zygotes.get(wid)
            if z is not None and z.alive():
                return z
            if z is not None:
                rc = z.proc.poll()
                log.warning("the zygote of %s exited (code %s); starting another", wid, rc)
                z.close()
            try:
                z = Zygote.launch(py, self._zygote_socket(wid), self._zygote_log(wid), cwd=workspace.root,
                                  env=env, timeout=_ZYGOTE_START_TIMEOUT)
            except ZygoteError as exc:
                self._zygote_failed[wid] = f"its zygote failed to start: {exc.reason}"
                log.warning("workspace %s: %s", wid, self._zygote_failed[wid])
                raise ZygoteError(self._zygote_failed[wid]) from exc
            with self._lock:
                closed = self._closed
                if not closed:
                    self._zygotes[wid] = z
            if closed:  # close() ran while it came up: nobody else would stop it
                z.close()
                raise ZygoteError("the daemon is shutting down")
            return z

    def _drop_zygote(self, wid: str) -> None:
        with self._lock:
            lock = self._zygote_locks.setdefault(wid, threading.Lock())
        with lock:
            self._zygote_failed.pop(wid, None)
            with self._lock:
                z = self._zygotes.pop(wid, None)
            if z is not None:
                z.close()

    # ---- objects ------------------------------------------------------------------------------

    def start(self, workspace: WorkspaceContext, spec: LaunchSpec, log_path: pathlib.Path) -> dict[str, Any]:
        py = workspace.build_info.get("python")
        if not py or not os.path.exists(py):
            raise StartError(f"workspace {workspace.id} has no built environment")
        venv = pathlib.Path(workspace.build_info.get("venv") or pathlib.Path(py).parent.parent)
        env = self._env(venv, spec.env)
        argv = spec.argv(workspace=str(workspace.root))
        try:
            cuda = gpus.cuda_visible_devices(gpus.parse(spec.gpus))
        except BadConfig as exc:
            raise StartError(str(exc)) from exc
        if cuda is not None and "CUDA_VISIBLE_DEVICES" not in spec.env:
            env["CUDA_VISIBLE_DEVICES"] = cuda  # the same GPUs a docker object would get
        if self.use_zygotes:
            startup = sorted(k for k in spec.env if k.upper().startswith(_STARTUP_ENV))
            try:
                if startup:
                    raise ZygoteError(f"{', '.join(startup)} must be set before the interpreter starts")
                z = self._zygote_for(workspace, py, self._env(venv))
                pid, start_time = z.spawn(argv, cwd=workspace.root, env=env, log_path=log_path)
            except ZygoteUnsure as exc:
                # it may have forked the object: starting another copy could run it twice
                self._drop_zygote(workspace.id)
                raise StartError(f"cannot start {spec.kind}: {exc.reason}") from exc
            except ZygoteError as exc:
                logs.event(log_path, f"starting a new interpreter: {exc.reason}", level="WARNING")
            else:
                if start_time is None:
                    start_time = _create_time(pid)
                with self._lock:
                    self._forked[pid] = z
                return self._remember(spec, {"runtime": self.name, "pid": pid, "pgid": pid,
                                             "start_time": start_time, "forked": True})
        return self._remember(spec, self._popen([py, "-m", LAUNCH_MODULE, *argv], workspace, spec, env, log_path))

    def _remember(self, spec: LaunchSpec, handle: dict[str, Any]) -> dict[str, Any]:
        handle["object_id"] = spec.object_id
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        path = self._object_file(spec.object_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(handle))
        tmp.chmod(0o600)
        tmp.replace(path)
        return handle

    def _object_file(self, object_id: str) -> pathlib.Path:
        return self.objects_dir / f"{pathlib.PurePath(object_id).name}.json"

    def _popen(self, cmd: list[str], workspace: WorkspaceContext, spec: LaunchSpec, env: dict[str, str],
               log_path: pathlib.Path) -> dict[str, Any]:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            proc = subprocess.Popen(
                cmd, cwd=workspace.root,
                env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise StartError(f"cannot start {spec.kind}: {exc}") from exc
        finally:
            os.close(fd)
        with self._lock:
            self._children[proc.pid] = proc
        return {"runtime": self.name, "pid": proc.pid, "pgid": proc.pid, "start_time": _create_time(proc.pid)}

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
                return self._exited(pid, f"process {pid} exited")
            return ObjectStatus(alive=True)
        except psutil.NoSuchProcess:
            return self._exited(pid, f"process {pid} vanished")
        except psutil.Error as exc:
            return ObjectStatus(alive=False, detail=f"process {pid} cannot be inspected: {exc}")

    def _exited(self, pid: int, detail: str) -> ObjectStatus:
        """A process that is gone (or a zombie): its exit code, if the zygote that forked it knows."""
        with self._lock:
            z = self._forked.get(pid)
        code = None
        # a zombie leader may still wait for its other threads to exit before it can be reaped
        deadline = time.monotonic() + 0.2
        while z is not None and z.alive():
            code = z.exit_code(pid)
            if code is not None or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if code is None:
            return ObjectStatus(alive=False, detail=detail)
        return ObjectStatus(alive=False, exit_code=code, detail=_describe_exit(code))

    def adopt(self, handle: dict[str, Any]) -> ObjectStatus:
        return self.status(handle)

    def stop(self, handle: dict[str, Any], timeout: float) -> ObjectStatus:
        pid = int(handle.get("pid") or 0)
        pgid = int(handle.get("pgid") or pid)
        st = self.status(handle)
        if st.alive:
            _signal(pid, signal.SIGTERM)
            st = self._wait_dead(handle, timeout)
            if st.alive:
                _signal(pid, signal.SIGKILL)
                st = self._wait_dead(handle, 2.0)
        if pgid > 0:
            self._reap_group(pgid, grace=min(timeout, 2.0))
        with self._lock:
            child = self._children.pop(pid, None)
            self._forked.pop(pid, None)
        if child is not None:
            try:
                child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if handle.get("object_id") and not st.alive:
            self._object_file(str(handle["object_id"])).unlink(missing_ok=True)
        return st

    def _wait_dead(self, handle: dict[str, Any], timeout: float) -> ObjectStatus:
        """Wait until the process exits: woken by its pidfd at once where Linux has them, else polling."""
        deadline = time.monotonic() + timeout
        pidfd = _pidfd(int(handle.get("pid") or 0))
        try:
            st = self.status(handle)
            while st.alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if pidfd is not None:
                    select.select([pidfd], [], [], min(left, 0.1))
                else:
                    time.sleep(min(left, 0.005))
                st = self.status(handle)
            return st
        finally:
            if pidfd is not None:
                os.close(pidfd)

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
    for pid in psutil.pids():  # getpgid is one system call; /proc/<pid>/stat is read only for members
        try:
            if os.getpgid(pid) != pgid:
                continue
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _private_dir_name(key: pathlib.Path) -> pathlib.Path:
    digest = hashlib.sha1(str(key).encode()).hexdigest()[:12]
    return pathlib.Path(tempfile.gettempdir()) / f"jinad-z-{os.getuid()}-{digest}"


def _private_dir(key: pathlib.Path) -> pathlib.Path:
    """A 0700 directory of ours in the temp dir, the same one for the same ``key`` (so a restarted
    daemon reuses it rather than leaving one behind per run); a fresh one if that name is taken."""
    path = _private_dir_name(key)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700:
        return path
    return pathlib.Path(tempfile.mkdtemp(prefix="jinad-z-"))  # someone else's, or not a private directory


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0  # already gone; status() will say so


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux >= 5.3), or None."""
    if pid <= 0 or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


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

"""A host-side wheelhouse for workspace images: this package's own wheel plus the requirements.

Two users: the docker runtime of ``jinad`` (through :mod:`jinad_fab.daemon.runtimes.wheelhouse`,
which turns :class:`WheelhouseError` into its ``BuildError``) and ``jinad-fab export``, whose
images are built by Docker Compose or by hand from the same template and the same wheels.

Images install everything with ``pip install --no-index`` from it, so a build needs no registry
and no network inside the build container, and the image runs the very code the daemon runs.

* :func:`self_wheel` packs the *installed* ``jinad_fab`` (regular or editable install) into a
  reproducible ``py3-none-any`` wheel: sorted entries, fixed timestamps, no ``__pycache__``.
  Same code -> same bytes -> same image hash.
* :func:`fill` downloads binary wheels only (``--only-binary=:all:``): pip never runs a
  workspace's ``setup.py`` on the daemon host. Wheels are kept in a shared cache directory so a
  second workspace with the same requirements downloads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.resources
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable

from .errors import JinadFabError

BuildLog = Callable[[str, str], None]
"""``log(source, line)``: where pip's output goes, line by line."""


class WheelhouseError(JinadFabError):
    """The wheels an image needs could not be gathered; ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


DIST_NAME = "jinad-fab"
PACKAGE = "jinad_fab"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SKIP = re.compile(r"(^|/)(__pycache__|\.mypy_cache|\.pytest_cache)(/|$)|\.py[co]$")


def version() -> str:
    return importlib.metadata.version(DIST_NAME)


def self_wheel(dest: pathlib.Path) -> pathlib.Path:
    """Write this package's wheel into ``dest`` and return its path."""
    dist = importlib.metadata.distribution(DIST_NAME)
    ver = dist.version
    root = pathlib.Path(str(importlib.resources.files(PACKAGE)))
    dist_info = f"{PACKAGE}-{ver}.dist-info"
    entries: list[tuple[str, bytes]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not _SKIP.search(rel):
            entries.append((f"{PACKAGE}/{rel}", path.read_bytes()))
    # An installed wheel has METADATA; a source checkout's egg-info has the same text as PKG-INFO.
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not metadata:
        raise WheelhouseError(f"cannot read the metadata of the installed {DIST_NAME}")
    entries.append((f"{dist_info}/METADATA", metadata.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    wheel_meta = "Wheel-Version: 1.0\nGenerator: jinad-fab\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.append((f"{dist_info}/WHEEL", wheel_meta.encode()))
    record = [f"{name},sha256={_urlsafe_digest(data)},{len(data)}" for name, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{PACKAGE}-{ver}-py3-none-any.whl"
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    tmp.replace(target)
    return target


def fill(
    dest: pathlib.Path,
    cache: pathlib.Path,
    own_wheel: pathlib.Path,
    requirements: pathlib.Path | None,
    python: str,
    log: BuildLog,
    pip_args: list[str] | tuple[str, ...] = (),
    timeout: float = 1800,
    popen: Callable[[list[str]], subprocess.Popen] | None = None,
    done: Callable[[], None] | None = None,
) -> list[pathlib.Path]:
    """Download every wheel the image needs into ``dest`` (reusing ``cache``); return them sorted.

    ``popen(cmd)`` starts pip with stdout and stderr on one text pipe (the daemon passes one that
    records the process so a restarted daemon can kill it); ``done()`` is called once pip is over,
    whatever happened."""
    cache.mkdir(parents=True, exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
        "--only-binary=:all:", "--dest", str(dest), "--find-links", str(cache), *pip_args,
    ]
    host_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != host_python:
        # The image's interpreter is not ours: ask pip for wheels that fit it instead.
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
        abi = "cp" + python.replace(".", "")
        cmd += ["--python-version", python, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
                "--abi", "none", "--platform", f"manylinux2014_{machine}",
                "--platform", f"manylinux_2_28_{machine}", "--platform", "any"]
    cmd.append(str(own_wheel))
    if requirements is not None:
        cmd += ["-r", str(requirements)]
    log("pip", "$ " + " ".join(cmd[1:]))
    try:
        proc = (popen or _popen)(cmd)
    except OSError as exc:
        raise WheelhouseError(f"could not run pip: {exc}") from exc
    assert proc.stdout is not None
    tail: list[str] = []
    try:
        with proc.stdout:  # closed here, not by the garbage collector (a ResourceWarning)
            for line in proc.stdout:
                line = line.rstrip("\n")
                log("pip", line)
                tail = (tail + [line])[-20:]
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise WheelhouseError(f"pip download took more than {timeout:g}s") from None
    finally:
        if done is not None:
            done()
    if code != 0:
        raise WheelhouseError("pip could not fetch the wheels: " + " / ".join(t for t in tail[-3:] if t.strip()))
    wheels = sorted(p for p in dest.iterdir() if p.suffix == ".whl")
    for wheel in wheels:
        if wheel.name != own_wheel.name and not (cache / wheel.name).exists():
            shutil.copy2(wheel, cache / wheel.name)
    return wheels


def _popen(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, close_fds=True)


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

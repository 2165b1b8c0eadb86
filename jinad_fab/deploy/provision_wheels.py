"""Wheels for provisioning air-gapped hosts, built on the controller: jinad-fab and all its
dependencies as wheels, so the jinad role installs them with ``pip --no-index``.

The wheels match the controller's Python and platform; hosts must run the same Python
minor version and architecture (Debian bookworm's python3.11 matches a 3.11 controller).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

from ..errors import BadConfig


def build(dest: str | pathlib.Path, source: str | pathlib.Path, *, extras: str = "daemon",
          timeout: float = 1800.0) -> list[pathlib.Path]:
    """``pip wheel`` ``source`` (a project folder or a requirement) with ``extras`` into ``dest``."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    requirement = f"{source}[{extras}]" if extras else str(source)
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BadConfig(f"building the wheelhouse took longer than {timeout:g}s") from exc
    if proc.returncode != 0:
        raise BadConfig(f"pip wheel failed:\n{proc.stderr.strip()[-3000:]}")
    wheels = sorted(dest.glob("*.whl"))
    if not any(w.name.startswith("jinad_fab-") for w in wheels):
        raise BadConfig(f"no jinad_fab wheel in {dest} after pip wheel")
    return wheels


def project_root() -> pathlib.Path | None:
    """The checkout this jinad-fab runs from (has pyproject.toml), or None for an installed wheel."""
    here = pathlib.Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() and (here / "jinad_fab").is_dir() else None

"""The wheelhouse of the docker runtime: :mod:`jinad_fab.wheelhouse`, with pip run as a recorded build
process (:mod:`.buildproc`) and failures raised as the runtime's BuildError."""

from __future__ import annotations

import os
import pathlib

from ... import wheelhouse as _wheelhouse
from . import buildproc
from .base import BuildError, BuildLog

DIST_NAME = _wheelhouse.DIST_NAME
version = _wheelhouse.version


def self_wheel(dest: pathlib.Path) -> pathlib.Path:
    try:
        return _wheelhouse.self_wheel(dest)
    except _wheelhouse.WheelhouseError as exc:
        raise BuildError(exc.reason) from exc


def fill(
    dest: pathlib.Path,
    cache: pathlib.Path,
    own_wheel: pathlib.Path,
    requirements: pathlib.Path | None,
    python: str,
    log: BuildLog,
    pip_args: list[str] | tuple[str, ...] = (),
    timeout: float = 1800,
    record: buildproc.Record | None = None,
) -> list[pathlib.Path]:
    """Download every wheel the image needs into ``dest`` (reusing ``cache``); return them sorted."""

    def popen(cmd: list[str]):
        return buildproc.popen(cmd, cwd=os.getcwd(), env=os.environ, record=record)

    try:
        return _wheelhouse.fill(dest, cache, own_wheel, requirements, python, log, pip_args=pip_args,
                                timeout=timeout, popen=popen,
                                done=(lambda: record(None)) if record is not None else None)
    except _wheelhouse.WheelhouseError as exc:
        raise BuildError(exc.reason) from exc

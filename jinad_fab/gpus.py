"""What a Pod/Pea means by ``gpus``: for both daemon runtimes and for local Pods of a Flow.

``gpus`` is ``"all"``, a count (``2`` or ``"2"``), or device ids (``"0,2"``, ``[0, 2]``,
``["GPU-3f2a..."]``). :func:`parse` normalises it once; the docker runtime turns the result into
a Docker ``DeviceRequest`` and the process runtime into ``CUDA_VISIBLE_DEVICES``
(:func:`cuda_visible_devices`); a Flow does the same for its local Pods (:func:`local_env`).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BadConfig

Gpus = str | int | tuple[str, ...] | None
"""``None`` (no GPU), ``"all"``, a count > 0, or a tuple of device ids."""

_DEVICE_ID = re.compile(r"^[A-Za-z0-9_:.-]{1,128}$")


def parse(value: Any) -> Gpus:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadConfig(f"gpus must be 'all', a count or device ids, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise BadConfig(f"gpus must not be negative, got {value}")
        return value or None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "all":
            return "all"
        if text.startswith("device="):
            text = text[len("device="):]
            return _ids(text.split(","))
        if text.isdigit() and "," not in text:
            count = int(text)
            return count or None
        return _ids(text.split(","))
    if isinstance(value, list | tuple):
        return _ids([str(v) for v in value])
    raise BadConfig(f"gpus must be 'all', a count or device ids, not {value!r}")


def _ids(items: list[str]) -> tuple[str, ...]:
    ids = tuple(i.strip() for i in items if i.strip())
    if not ids:
        raise BadConfig("gpus: empty device id list")
    for device in ids:
        if not _DEVICE_ID.match(device):
            raise BadConfig(f"gpus: bad device id {device!r}")
    return ids


def cuda_visible_devices(gpus: Gpus) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value for the process runtime (``None``: leave it unset).

    No GPU asked for -> ``""`` hides every GPU from the process, so it cannot take one by accident.
    """
    if gpus is None:
        return ""
    if gpus == "all":
        return None
    if isinstance(gpus, int):
        return ",".join(str(i) for i in range(gpus))
    return ",".join(gpus)


def device_request_kwargs(gpus: Gpus) -> dict[str, Any] | None:
    """Arguments of ``docker.types.DeviceRequest`` for ``gpus`` (``None``: no request)."""
    if gpus is None:
        return None
    kwargs: dict[str, Any] = {"driver": "nvidia", "capabilities": [["gpu"]]}
    if gpus == "all":
        kwargs["count"] = -1
    elif isinstance(gpus, int):
        kwargs["count"] = gpus
    else:
        kwargs["device_ids"] = list(gpus)
    return kwargs


def local_env(value: Any) -> dict[str, str]:
    """The environment a local Pod's processes get for its ``gpus`` option (``{}``: nothing asked).

    Unlike a daemon object, a local Pod that asks for nothing keeps the GPUs its Flow's process sees.
    """
    parsed = parse(value)
    if parsed is None:
        return {}
    cuda = cuda_visible_devices(parsed)
    return {} if cuda is None else {"CUDA_VISIBLE_DEVICES": cuda}

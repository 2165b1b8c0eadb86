"""Background housekeeping: keep recorded states true while nobody is looking."""

from __future__ import annotations

import asyncio
import contextlib

from ..schemas import ObjectState
from .manager import Manager


async def reconcile_forever(manager: Manager, interval: float) -> None:
    """Every ``interval`` seconds, mark RUNNING objects whose process died as FAILED (with why)."""
    while True:
        await asyncio.sleep(interval)
        for kind in ("flow", "pod", "pea"):
            for rec in manager.store.list(kind=kind, states=(ObjectState.RUNNING.value,)):
                with contextlib.suppress(Exception):  # one odd record must not stop the loop
                    await asyncio.to_thread(manager.refresh, rec)

"""Background housekeeping: keep recorded states true while nobody is looking."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..schemas import ObjectState, WorkspaceState
from . import logs
from .manager import Manager

log = logging.getLogger("jinad_fab.daemon.gc")


SWEEP_EVERY = 10  # reconcile rounds between two sweeps of runtime leftovers


async def reconcile_forever(manager: Manager, interval: float) -> None:
    """Every ``interval`` seconds, mark RUNNING objects whose process died as FAILED (with why),
    rotate the logs that grew past their size and hand Flows their peers' rotated tokens;
    every few rounds, let runtimes that keep things outside the store (Docker containers,
    networks, images) remove what no record owns any more."""
    rounds = 0
    while True:
        await asyncio.sleep(interval)
        for kind in ("flow", "pod", "pea"):
            for rec in manager.store.list(kind=kind, states=(ObjectState.RUNNING.value,)):
                with contextlib.suppress(Exception):  # one odd record must not stop the loop
                    await asyncio.to_thread(manager.refresh, rec)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(rotate_logs, manager)
        with contextlib.suppress(Exception):  # issue 16: objects whose Flow stopped renewing them
            await manager.expire_leases()
        if manager.settings.peers:
            with contextlib.suppress(Exception):  # a peer's token file rewritten: its Flows get the new token
                await asyncio.to_thread(manager.hand_over_peer_tokens)
        rounds += 1
        if rounds % SWEEP_EVERY == 0:
            await sweep(manager)


def rotate_logs(manager: Manager) -> int:
    """Rotate the logs of what is running or building (what else writes them?); return how many."""
    states = (ObjectState.STARTING.value, ObjectState.RUNNING.value, ObjectState.STOPPING.value,
              WorkspaceState.PENDING.value, WorkspaceState.BUILDING.value)
    settings = manager.settings
    return sum(logs.rotate(manager.log_path(rec.id), settings.log_max_bytes, settings.log_backups)
               for rec in manager.store.list(states=states))


async def sweep(manager: Manager) -> dict[str, list[str]]:
    """Run each runtime's ``sweep(live_objects, live_workspaces)`` (part of the Runtime interface)."""
    live_states = (ObjectState.STARTING.value, ObjectState.RUNNING.value, ObjectState.STOPPING.value)
    live_objects = {r.id for kind in ("flow", "pod", "pea")
                    for r in manager.store.list(kind=kind, states=live_states)}
    live_workspaces = {r.id for r in manager.store.list(kind="workspace")}
    removed: dict[str, list[str]] = {}
    for name, rt in manager.runtimes.items():
        try:
            removed[name] = await asyncio.to_thread(rt.sweep, live_objects, live_workspaces)
        except Exception as exc:  # an engine hiccup must not stop housekeeping
            log.warning("sweep of the %s runtime failed: %s", name, exc)
    return removed

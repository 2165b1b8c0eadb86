"""/logs/{id}: an object's (or a workspace build's) log as NDJSON; ``follow`` streams."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ....errors import NotFound
from ....schemas import AnyId, ObjectState, WorkspaceState
from ... import logs
from ..deps import ManagerDep

router = APIRouter(prefix="/logs", tags=["logs"])

_TERMINAL = {ObjectState.STOPPED.value, ObjectState.FAILED.value, WorkspaceState.ACTIVE.value,
             WorkspaceState.FAILED.value}


@router.get("/{object_id}", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
async def get_logs(object_id: AnyId, manager: ManagerDep,
                   offset: int = Query(0, ge=0, description="skip this many lines (lines already received)"),
                   tail: int | None = Query(None, ge=0, description="only the last N lines"),
                   follow: bool = Query(False, description="keep streaming until the object stops")):
    path = manager.log_path(object_id)
    if manager.store.get(object_id) is None and not path.exists():
        raise NotFound(f"no object with id {object_id}")

    def finished() -> bool:
        rec = manager.store.get(object_id)
        return rec is None or rec.state in _TERMINAL

    if follow:
        body = logs.follow(path, offset=offset, tail=tail, finished=finished)
    elif tail is not None:
        lines, _ = await asyncio.to_thread(logs.read, path, offset=offset, tail=tail)  # off the event loop
        body = iter(lines)
    else:
        body = logs.lines_from(path, offset)  # a sync generator: Starlette iterates it in a thread
    return StreamingResponse(body, media_type="application/x-ndjson")

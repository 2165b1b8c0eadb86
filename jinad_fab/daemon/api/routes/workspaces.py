"""/workspaces: multipart upload, inspect, update and rebuild, delete."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from ....schemas import WorkspaceId, WorkspaceList, WorkspacePublic
from ...workspaces import read_upload
from ..deps import ManagerDep, SettingsDep

router = APIRouter(prefix="/workspaces", tags=["workspaces"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                     "description": "each part's filename is its path in the workspace"}},
        }}},
    }
}


@router.post("", status_code=201, response_model=WorkspacePublic, openapi_extra=_UPLOAD_BODY)
async def create_workspace(request: Request, manager: ManagerDep, settings: SettingsDep,
                           runtime: str | None = None,
                           extract: bool = Query(True, description="unpack uploaded zip/tar archives")):
    parts = await read_upload(request, max_bytes=settings.max_upload_bytes, max_files=settings.max_files)
    rec = await manager.create_workspace(parts, runtime, extract)
    return manager.workspace_view(rec)


@router.get("", response_model=WorkspaceList)
async def list_workspaces(manager: ManagerDep):
    return {"items": [manager.workspace_view(r) for r in manager.store.list(kind="workspace")]}


@router.get("/{workspace_id}", response_model=WorkspacePublic)
async def get_workspace(workspace_id: WorkspaceId, manager: ManagerDep):
    return manager.workspace_view(manager.get(workspace_id, "workspace"))


@router.put("/{workspace_id}", response_model=WorkspacePublic,
            openapi_extra={"requestBody": {**_UPLOAD_BODY["requestBody"], "required": False}})
async def update_workspace(workspace_id: WorkspaceId, request: Request, manager: ManagerDep,
                           settings: SettingsDep, extract: bool = True):
    manager.get(workspace_id, "workspace")
    parts = []
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        parts = await read_upload(request, max_bytes=settings.max_upload_bytes, max_files=settings.max_files)
    rec = await manager.update_workspace(workspace_id, parts, extract)
    return manager.workspace_view(rec)


@router.delete("/{workspace_id}", status_code=204)
async def delete_workspace(workspace_id: WorkspaceId, manager: ManagerDep) -> Response:
    await manager.delete_workspace(workspace_id)
    return Response(status_code=204)

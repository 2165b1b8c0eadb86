"""/flows: start a Flow from a YAML file in a workspace, list, inspect, stop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ....schemas import FlowId, FlowList, FlowPublic, WorkspaceId
from ...store import Record
from ..deps import ManagerDep

router = APIRouter(prefix="/flows", tags=["flows"])


def flow_view(rec: Record) -> dict[str, Any]:
    return {"id": rec.id, "workspace_id": rec.workspace_id, "state": rec.state, "created": rec.created,
            "updated": rec.updated, "error": rec.error, "pid": rec.data.get("pid"),
            "filename": rec.data.get("filename", ""), "gateway": rec.data.get("gateway")}


@router.post("", status_code=201, response_model=FlowPublic)
async def create_flow(workspace_id: WorkspaceId, manager: ManagerDep, filename: str = "flow.yml"):
    return flow_view(await manager.start_flow(workspace_id, filename))


@router.get("", response_model=FlowList)
async def list_flows(manager: ManagerDep):
    return {"items": [flow_view(r) for r in manager.list_objects("flow")]}


@router.get("/{flow_id}", response_model=FlowPublic)
async def get_flow(flow_id: FlowId, manager: ManagerDep):
    return flow_view(manager.get_object(flow_id, "flow"))


@router.delete("/{flow_id}", response_model=FlowPublic)
async def delete_flow(flow_id: FlowId, manager: ManagerDep):
    manager.get(flow_id, "flow")
    return flow_view(await manager.stop(flow_id))

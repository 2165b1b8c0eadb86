"""/flows: start a Flow from a YAML file in a workspace, list, inspect, stop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ....schemas import FlowCreate, FlowId, FlowList, FlowPublic, WorkspaceId
from ...store import Record
from ..deps import ManagerDep

router = APIRouter(prefix="/flows", tags=["flows"])


def flow_view(rec: Record) -> dict[str, Any]:
    return {"id": rec.id, "workspace_id": rec.workspace_id, "state": rec.state, "created": rec.created,
            "updated": rec.updated, "error": rec.error, "pid": rec.data.get("pid"),
            "filename": rec.data.get("filename", ""), "gateway": rec.data.get("gateway"),
            "pods": [p for p in rec.data.get("pods") or [] if isinstance(p, dict)]}


@router.post("", status_code=201, response_model=FlowPublic)
async def create_flow(workspace_id: WorkspaceId, manager: ManagerDep, filename: str = "flow.yml",
                      body: FlowCreate | None = None):
    """Start a Flow from a YAML file of the workspace. Pods naming other daemons (``host: gpu1:8000``)
    are started there; the optional body carries those daemons' tokens."""
    peers = {k: v.get_secret_value() for k, v in body.peers.items()} if body else {}
    return flow_view(await manager.start_flow(workspace_id, filename, peers))


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

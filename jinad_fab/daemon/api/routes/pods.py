"""/pods and /peas: start one from JSON args in a workspace, list, inspect, stop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ....errors import Invalid
from ....schemas import (
    FlowChange,
    PeaCreate,
    PeaId,
    PeaList,
    PeaPublic,
    PodCreate,
    PodId,
    PodList,
    PodPublic,
    WorkspaceId,
)
from ...store import Record
from ..deps import ManagerDep
from .flows import parse_change

pods = APIRouter(prefix="/pods", tags=["pods"])
peas = APIRouter(prefix="/peas", tags=["peas"])


def pod_view(rec: Record) -> dict[str, Any]:
    d = rec.data
    return {"id": rec.id, "workspace_id": rec.workspace_id, "state": rec.state, "created": rec.created,
            "updated": rec.updated, "error": rec.error, "pid": d.get("pid"), "args": d.get("args", {}),
            "ports": d.get("ports") or {}, "in_addresses": d.get("in_addresses") or [],
            "ctrl_address": d.get("ctrl_address")}


@pods.post("", status_code=201, response_model=PodPublic)
async def create_pod(workspace_id: WorkspaceId, body: PodCreate, manager: ManagerDep):
    return pod_view(await manager.start_pod("pod", workspace_id, body))


@pods.get("", response_model=PodList)
async def list_pods(manager: ManagerDep):
    return {"items": [pod_view(r) for r in manager.list_objects("pod")]}


@pods.get("/{pod_id}", response_model=PodPublic)
async def get_pod(pod_id: PodId, manager: ManagerDep, renew: bool = False):
    """The Pod; with ``renew=true`` its Flow also renews its lease (see ``lease`` in the create body)."""
    if renew:
        manager.renew(manager.get(pod_id, "pod").id)
    return pod_view(manager.get_object(pod_id, "pod"))


@pods.put("/{pod_id}", response_model=PodPublic,
          openapi_extra={"requestBody": {"required": True, "content": {
              "application/json": {"schema": FlowChange.model_json_schema()}}}})
async def change_pod(pod_id: PodId, request: Request, manager: ManagerDep):
    """Scale a standalone Pod or roll its replicas (body: :class:`FlowChange` with ``kind`` scale or
    rolling_update). The answer's ``live`` holds the new ``in_target`` its senders must follow and
    one event per replica; a Pod wired by a Flow changes through the Flow (``PUT /flows/{id}``)."""
    try:
        raw = await request.json()
    except ValueError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from exc
    change = parse_change(raw)
    live = await manager.change_pod(pod_id, change.model_dump(exclude={"wait"}, exclude_none=True))
    return {**pod_view(manager.get_object(pod_id, "pod")), "live": live}


@pods.delete("/{pod_id}", response_model=PodPublic)
async def delete_pod(pod_id: PodId, manager: ManagerDep):
    manager.get(pod_id, "pod")
    return pod_view(await manager.stop(pod_id))


@peas.post("", status_code=201, response_model=PeaPublic)
async def create_pea(workspace_id: WorkspaceId, body: PeaCreate, manager: ManagerDep):
    return pod_view(await manager.start_pod("pea", workspace_id, body))


@peas.get("", response_model=PeaList)
async def list_peas(manager: ManagerDep):
    return {"items": [pod_view(r) for r in manager.list_objects("pea")]}


@peas.get("/{pea_id}", response_model=PeaPublic)
async def get_pea(pea_id: PeaId, manager: ManagerDep):
    return pod_view(manager.get_object(pea_id, "pea"))


@peas.delete("/{pea_id}", response_model=PeaPublic)
async def delete_pea(pea_id: PeaId, manager: ManagerDep):
    manager.get(pea_id, "pea")
    return pod_view(await manager.stop(pea_id))

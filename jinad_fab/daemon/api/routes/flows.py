"""/flows: start a Flow from a YAML file in a workspace, list, inspect, stop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ....errors import Invalid
from ....schemas import FlowChange, FlowCreate, FlowId, FlowList, FlowPublic, WorkspaceId, WorkspacePath
from ...store import Record
from ..deps import ManagerDep

router = APIRouter(prefix="/flows", tags=["flows"])


def flow_view(rec: Record) -> dict[str, Any]:
    return {"id": rec.id, "workspace_id": rec.workspace_id, "state": rec.state, "created": rec.created,
            "updated": rec.updated, "error": rec.error, "pid": rec.data.get("pid"),
            "filename": rec.data.get("filename", ""), "gateway": rec.data.get("gateway"),
            "pods": [p for p in rec.data.get("pods") or [] if isinstance(p, dict)],
            "peers": list(rec.data.get("peers") or [])}


@router.post("", status_code=201, response_model=FlowPublic)
async def create_flow(workspace_id: WorkspaceId, manager: ManagerDep, filename: WorkspacePath = "flow.yml",
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
    rec = manager.get_object(flow_id, "flow")
    return {**flow_view(rec), "live": await manager.flow_live(rec)}


def parse_change(raw: Any) -> FlowChange:
    """The body, or 400 naming the first field that does not fit (not FastAPI's 422 list)."""
    if not isinstance(raw, dict):
        raise Invalid("the body must be a JSON object with kind and pod")
    try:
        return FlowChange.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "body"
        raise Invalid(f"{field}: {err.get('msg')} (got {err.get('input')!r})") from exc


@router.put("/{flow_id}", response_model=FlowPublic, responses={202: {"model": FlowPublic}},
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": FlowChange.model_json_schema()}}}})
async def change_flow(flow_id: FlowId, request: Request, manager: ManagerDep):
    """Change a running Flow: scale a Pod, roll its replicas to a new Executor version or an index
    dump, or dump an ``_index`` (body: :class:`FlowChange`). 409 while another change runs."""
    try:
        raw = await request.json()
    except ValueError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from exc
    change = parse_change(raw)
    live = await manager.change_flow(flow_id, change.model_dump(exclude={"wait"}, exclude_none=True), change.wait)
    body = {**flow_view(manager.get_object(flow_id, "flow")), "live": live}
    if not change.wait:
        return JSONResponse(FlowPublic.model_validate(body).model_dump(mode="json"), status_code=202)
    return body


@router.put("/{flow_id}/peers", response_model=FlowPublic)
async def hand_over_peer_tokens(flow_id: FlowId, body: FlowCreate, manager: ManagerDep):
    """Hand a running Flow other daemons' new tokens (what `provision rotate-token` does before the
    old ones stop working), sealed as at its start; only for daemons it was handed a token for (its
    ``peers``). Its clients send the new token once refused with the old one."""
    peers = {k: v.get_secret_value() for k, v in body.peers.items()}
    return flow_view(await manager.hand_over_tokens(flow_id, peers))


@router.delete("/{flow_id}", response_model=FlowPublic)
async def delete_flow(flow_id: FlowId, manager: ManagerDep):
    manager.get(flow_id, "flow")
    return flow_view(await manager.stop(flow_id))

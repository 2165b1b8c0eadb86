"""/deployments: the records of fleet Flows whose Gateway runs here, and copies of the records of
those this daemon runs Pods for (see daemon/deployments.py)."""

from __future__ import annotations

from fastapi import APIRouter

from ....schemas import (
    DeploymentCopy,
    DeploymentList,
    DeploymentLockPublic,
    DeploymentLockTake,
    DeploymentName,
    DeploymentPublic,
    DeploymentWrite,
)
from ... import deployments
from ..deps import ManagerDep

router = APIRouter(prefix="/deployments", tags=["deployments"])


@router.get("", response_model=DeploymentList)
async def list_deployments(manager: ManagerDep):
    return {"items": [deployments.view(manager, r) for r in deployments.listing(manager)]}


@router.get("/{name}", response_model=DeploymentPublic)
async def get_deployment(name: DeploymentName, manager: ManagerDep):
    return deployments.view(manager, deployments.get(manager, name))


@router.put("/{name}", response_model=DeploymentPublic)
async def put_deployment(name: DeploymentName, body: DeploymentWrite, manager: ManagerDep):
    """Record what a controller applied; a spec hash unlike the current one is a new release."""
    return deployments.view(manager, deployments.write(manager, name, body))


@router.put("/{name}/copy", response_model=DeploymentPublic)
async def put_deployment_copy(name: DeploymentName, body: DeploymentCopy, manager: ManagerDep):
    """Keep a copy of a record whose Gateway runs on another daemon (`flow ps` finds it when that
    host is lost); 409 when this daemon keeps the deployment itself."""
    return deployments.view(manager, deployments.write_copy(manager, name, body))


@router.delete("/{name}", response_model=DeploymentPublic)
async def delete_deployment(name: DeploymentName, manager: ManagerDep, keep_workspaces: bool = False):
    """Stop the deployment's Flow here (which stops its Pods on other daemons), remove its
    workspaces and the record. Objects the deployment did not start are left alone."""
    rec = await deployments.delete(manager, name, keep_workspaces=keep_workspaces)
    return deployments.view(manager, rec)


@router.put("/{name}/lock", response_model=DeploymentLockPublic)
async def take_deployment_lock(name: DeploymentName, body: DeploymentLockTake, manager: ManagerDep):
    """Take (or renew) the lease of one controller on changing the deployment (`flow up|scale|update|
    rollback|down`); 409 naming who holds it while its lease runs. A controller that dies stops
    renewing: its lease ends after ``ttl`` seconds."""
    return deployments.lock_view(deployments.take_lock(manager, name, body))


@router.delete("/{name}/lock", response_model=DeploymentLockPublic)
async def release_deployment_lock(name: DeploymentName, manager: ManagerDep, owner: str | None = None,
                                  force: bool = False):
    """Release the lock (``owner``: the run holding it), or break it whoever holds it (``force``:
    `--break-lock`, when its controller died)."""
    return deployments.lock_view(deployments.release_lock(manager, name, owner, force=force))

"""GET /, /alive (no token needed) and /status."""

from __future__ import annotations

import asyncio
import os
import time

import psutil
from fastapi import APIRouter, Request

from ....schemas import Health, HostResources, Status
from ..deps import ManagerDep

router = APIRouter(tags=["health"])


def _health(request: Request) -> Health:
    st = request.app.state
    return Health(version=st.version, daemon_id=st.daemon_id, uptime=time.monotonic() - st.started,
                  runtimes=sorted(st.manager.runtimes), gpus=st.gpus)


@router.get("/", response_model=Health)
async def root(request: Request) -> Health:
    return _health(request)


@router.get("/alive", response_model=Health)
async def alive(request: Request) -> Health:
    return _health(request)


def _resources(home: str, gpus: list) -> HostResources:
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage(home)
    return HostResources(cpu_count=psutil.cpu_count() or 1, cpu_percent=psutil.cpu_percent(interval=None),
                         load_average=list(os.getloadavg()), memory_total=mem.total,
                         memory_available=mem.available, disk_total=disk.total, disk_free=disk.free, gpus=gpus)


@router.get("/status", response_model=Status)
async def status(request: Request, manager: ManagerDep) -> Status:
    res = await asyncio.to_thread(_resources, str(manager.home), request.app.state.gpus)
    return Status(daemon_id=request.app.state.daemon_id, resources=res, counts=manager.store.counts())

"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..manager import Manager
from ..settings import DaemonSettings


def get_manager(request: Request) -> Manager:
    return request.app.state.manager


def get_settings(request: Request) -> DaemonSettings:
    return request.app.state.settings


ManagerDep = Annotated[Manager, Depends(get_manager)]
SettingsDep = Annotated[DaemonSettings, Depends(get_settings)]

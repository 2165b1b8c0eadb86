"""What a daemon left on a Docker engine, and how to remove it."""

from __future__ import annotations

import os
import subprocess

BASE_IMAGE = os.environ.get("JINAD_FAB_TEST_BASE_IMAGE", "jinad-fab/base:bookworm")
LABEL_DAEMON = "jinad.daemon"


def leftovers(engine, daemon_id: str) -> dict[str, list[str]]:
    """Everything on the engine labelled as owned by ``daemon_id``."""
    flt = {"label": f"{LABEL_DAEMON}={daemon_id}"}
    return {
        "containers": [c.name for c in engine.containers.list(all=True, filters=flt)],
        "networks": [n.name for n in engine.networks.list(filters=flt)],
        "images": [i.id for i in engine.images.list(filters=flt)],
    }


def purge(engine, daemon_id: str) -> None:
    flt = {"label": f"{LABEL_DAEMON}={daemon_id}"}
    for c in engine.containers.list(all=True, filters=flt):
        c.remove(force=True)
    for n in engine.networks.list(filters=flt):
        n.remove()
    for i in engine.images.list(filters=flt):
        try:
            engine.images.remove(i.id, force=True)
        except Exception:
            pass


def docker_cli(*args: str) -> str:
    """What an operator would see (`docker ps -a`, ...); tests assert on it, product code never runs it."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=True).stdout

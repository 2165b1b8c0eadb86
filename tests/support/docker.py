"""What a daemon left on a Docker engine, and how to remove it."""

from __future__ import annotations

import os
import subprocess
import warnings

BASE_IMAGE = os.environ.get("JINAD_FAB_TEST_BASE_IMAGE", "jinad-fab/base:bookworm")
LABEL_DAEMON = "jinad.daemon"


ENGINE_MISCOUNT = "has active endpoints"
"""What the engine (20.10) answers when it has miscounted a network's endpoints.

When several containers join or leave one network at once, the engine's count of the network's
endpoints can end up too high (moby/moby#42119). The network then has no container attached, as
its inspect shows, yet the engine refuses to remove it until dockerd restarts; the restart's log
then says "Fixing inconsistent endpoint_cnt". It happened once in CI, at the last `docker-compose
down` of the compose export test."""


class EngineKeptNetwork(UserWarning):
    """A network with no container attached that the engine would not remove (ENGINE_MISCOUNT)."""


def remove_network(network) -> bool:
    """Remove ``network``; False when the engine keeps it only by its miscount (then it is reported).

    Only a network with no container attached is let through so: any other refusal raises.
    """
    import docker.errors  # here, not at the top: pytest's warning filters import this module

    try:
        network.remove()
        return True
    except docker.errors.APIError as e:
        if ENGINE_MISCOUNT not in str(e):
            raise
        network.reload()
        if network.attrs.get("Containers"):
            raise
    warnings.warn(f"the engine kept network {network.name} with no container attached "
                  f"({ENGINE_MISCOUNT!r}, moby/moby#42119); it goes when dockerd restarts",
                  EngineKeptNetwork, stacklevel=2)
    return False


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
        remove_network(n)
    for i in engine.images.list(filters=flt):
        try:
            engine.images.remove(i.id, force=True)
        except Exception:
            pass


def docker_cli(*args: str) -> str:
    """What an operator would see (`docker ps -a`, ...); tests assert on it, product code never runs it."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=True).stdout

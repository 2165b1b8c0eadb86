"""The build cache a workspace image leaves behind (its venv with the installed wheels) is kept for
the next build while an image uses it, and pruned by the sweep once unused past its age."""

from __future__ import annotations

import time
import uuid

import docker.errors
import pytest

from tests.support.daemons import FLOW_YML, upload, wait_state
from tests.support.docker import leftovers

pytestmark = pytest.mark.timeout(600)

SHARED_STEP = "/tmp/jinad-wheels"  # the Dockerfile step that installs the wheelhouse


def _exists(engine, image_id: str) -> bool:
    try:
        engine.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build(c, tag: str) -> str:
    r = upload(c, {"flow.yml": FLOW_YML, "requirements.txt": "six\n", "which.txt": tag}, runtime="docker")
    assert r.status_code == 201, r.text
    ws = wait_state(c, f"/workspaces/{r.json()['id']}", {"ACTIVE", "FAILED"}, timeout=300)
    if ws["state"] != "ACTIVE":  # the engine's own words, not a truncated record
        pytest.fail(f"the build ended {ws['state']}:\n" + c.get(f"/logs/{ws['id']}", params={"tail": 40}).text)
    return ws["id"]


def test_unused_build_cache_is_pruned_and_used_cache_is_kept(daemon_factory, engine):
    d = daemon_factory(runtime="docker", env={"JINAD_DOCKER_CACHE_MAX_AGE": "0", "JINAD_RECONCILE_INTERVAL": "0.2"})
    daemon_id = (d.home / "daemon-id").read_text().strip()
    with d.client() as c:
        first = _build(c, uuid.uuid4().hex)
        (image,) = leftovers(engine, daemon_id)["images"]
        (layer,) = [h["Id"] for h in engine.api.history(image)
                    if SHARED_STEP in (h.get("CreatedBy") or "") and h["Id"].startswith("sha256:")][:1]
        second = _build(c, uuid.uuid4().hex)  # same wheels: built on the same cached layer
        assert c.delete(f"/workspaces/{first}").status_code == 204
        time.sleep(5)  # several sweeps: the layer the second workspace's image is built on stays
        assert _exists(engine, layer)
        assert c.delete(f"/workspaces/{second}").status_code == 204
        deadline = time.monotonic() + 60
        while _exists(engine, layer) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _exists(engine, layer), "the unused build cache was never pruned"

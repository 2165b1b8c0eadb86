"""The docker tier: a real Docker engine, real images and containers.

Every test owns what it creates: each daemon (or bare runtime) gets its own id, and at the end
every container, network and image labelled with that id is removed, even when the test failed.
The engine and the local base image come from `.ci/setup.d/20-docker.sh`; without an engine the
tier is skipped with the reason, never silently passed.
"""

from __future__ import annotations

import os
import pathlib
import sys
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration" / "daemon"))
from dockerkit import BASE_IMAGE, purge  # noqa: E402
from jinad_testkit import Daemon, reap  # noqa: E402


def _engine():
    docker = pytest.importorskip("docker")
    try:
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto", timeout=120)
        client.ping()
    except Exception as exc:  # no engine: say so
        pytest.skip(f"no Docker engine: {exc}")
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"base image {BASE_IMAGE} is missing; run .ci/setup.d/20-docker.sh")
    return client


@pytest.fixture(scope="session")
def engine():
    client = _engine()
    yield client
    client.close()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> pathlib.Path:
    """The wheels a workspace image needs, fetched once per session; daemons then build offline."""
    import jinad_fab.daemon.runtimes.wheelhouse as wh

    root = tmp_path_factory.mktemp("wheelhouse")
    cache = pathlib.Path(os.environ.get("JINAD_FAB_CACHE_DIR", "/var/cache/jinad-fab")) / "wheels"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = root / "cache"
    own = wh.self_wheel(root / "self")
    extra = root / "requirements.txt"
    extra.write_text("six\n")
    lines: list[str] = []
    wh.fill(root / "wheels", cache, own, extra, f"{sys.version_info.major}.{sys.version_info.minor}",
            lambda source, line: lines.append(line), timeout=600)
    return root / "wheels"


@pytest.fixture
def docker_daemon(tmp_path, engine, wheelhouse, monkeypatch):
    """Start real `jinad` daemons with the docker runtime; remove all they made afterwards."""
    made: list[Daemon] = []
    monkeypatch.setenv("JINAD_DOCKER_BASE_IMAGE", BASE_IMAGE)
    monkeypatch.setenv("JINAD_PIP_INDEX_ARGS", f'["--no-index", "--find-links", "{wheelhouse}"]')

    def make(home: pathlib.Path | None = None) -> Daemon:
        home = home or tmp_path / f"home{len(made)}"
        home.mkdir(parents=True, exist_ok=True)
        daemon_id = home / "daemon-id"
        if not daemon_id.exists():
            daemon_id.write_text(f"jinad-test-{uuid.uuid4().hex[:12]}\n")
        d = Daemon(home, extra=["--runtime", "docker"])
        made.append(d)
        return d.start(timeout=60)

    yield make
    for d in made:
        d.kill()
    for d in made:
        reap(d.home)
        purge(engine, (d.home / "daemon-id").read_text().strip())

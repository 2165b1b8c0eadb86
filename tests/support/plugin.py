"""The fixtures every tier shares (registered by ``pytest_plugins`` in tests/conftest.py).

- ``daemon_factory``: start real `jinad` daemons, ``make(runtime="process"|"docker", token=...,
  extra=[...], home=..., scheme=..., verify=...)``; each gets its own home under ``tmp_path`` and a
  free loopback port. Afterwards every daemon is stopped, every process it started is reaped and,
  for the docker runtime, every container, network and image labelled with its id is removed,
  even when the test failed.
- ``engine``: the Docker engine (skips the test, naming the reason, when there is none).
- ``wheelhouse``: the wheels a workspace image needs, fetched once per session.
- ``wheels``: jinad-fab[daemon] and every dependency as wheels built on this controller, what
  `jinad-fab provision --wheelhouse` copies to hosts; built once per session (the deploy and
  multihost tests only read it).
"""

from __future__ import annotations

import os
import pathlib
import sys
import uuid

import pytest

from .daemons import Daemon, reap
from .docker import BASE_IMAGE, purge

RUNTIMES = ("process", "docker")


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
        client.close()
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


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> pathlib.Path:
    """jinad-fab[daemon] and every dependency as wheels, built on this controller once per session."""
    import shutil

    from jinad_fab.deploy import provision_wheels

    root = provision_wheels.project_root()
    assert root is not None, "these tests run from a checkout"
    dest = tmp_path_factory.mktemp("provision-wheels")
    cache = os.environ.get("JINAD_FAB_TEST_WHEEL_CACHE")
    if cache and pathlib.Path(cache).is_dir():  # wheels of dependencies kept between runs
        for w in pathlib.Path(cache).glob("*.whl"):
            if not w.name.startswith("jinad_fab-"):
                shutil.copy(w, dest)
    provision_wheels.build(dest, root)
    return dest


def docker_env(home: pathlib.Path, wheels: pathlib.Path) -> dict[str, str]:
    """What a docker-runtime daemon of the tests is given: the local base image, the wheelhouse
    to build offline from, and a test-owned id in its home (everything labelled with it is purged
    afterwards: :func:`tests.support.docker.purge`)."""
    daemon_id = home / "daemon-id"
    if not daemon_id.exists():
        daemon_id.write_text(f"jinad-test-{uuid.uuid4().hex[:12]}\n")
    return {"JINAD_DOCKER_BASE_IMAGE": BASE_IMAGE,
            "JINAD_PIP_INDEX_ARGS": f'["--no-index", "--find-links", "{wheels}"]'}


@pytest.fixture
def daemon_factory(request, tmp_path):
    """Start real `jinad` daemons of either runtime; all of them and all they made go afterwards."""
    made: list[tuple[Daemon, object]] = []

    def make(runtime: str = "process", token: str | None = None, extra: list[str] | None = None,
             home: pathlib.Path | None = None, timeout: float | None = None, **kw) -> Daemon:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        home = home or tmp_path / f"jinad{len(made)}"
        home.mkdir(parents=True, exist_ok=True)
        engine, env, args = None, {}, list(extra or [])
        if runtime == "docker":
            engine = request.getfixturevalue("engine")
            env = docker_env(home, request.getfixturevalue("wheelhouse"))
            args = ["--runtime", "docker", *args]
        d = Daemon(home, token=token, extra=args, env={**env, **kw.pop("env", {})}, **kw)
        made.append((d, engine))
        return d.start(timeout=timeout or (60 if runtime == "docker" else 20))

    yield make
    for d, engine in made:
        if engine is None:
            d.stop()
        else:  # a graceful stop would wait on every container: the purge below removes them
            d.kill()
    for d, engine in made:
        reap(d.home)
        if engine is not None:
            purge(engine, (d.home / "daemon-id").read_text().strip())

"""`jinad-fab export compose` on the real engine: build, up, index, search, restart, down.

The Flow has an Executor from the Flow's folder (so the image really carries the workspace),
replicas behind a head, and two `_index` shards. Every container, network, volume and the image of
the test's compose project (a name of its own) are removed at the end, even when it failed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest
import yaml
from click.testing import CliRunner

from jinad_fab import Client, Document, DocumentArray
from jinad_fab.cli.main import cli
from tests.support.docker import BASE_IMAGE, ENGINE_MISCOUNT, remove_network
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(1800)

EXECUTOR = '''\
import zlib

import numpy as np

from jinad_fab import Executor, requests


class Embed(Executor):
    """A Document's embedding from its text: the same text, the same vector."""

    @requests(on=["/index", "/search"])
    def embed(self, docs, **kwargs):
        for d in docs:
            rng = np.random.default_rng(zlib.crc32(d.text.encode()))
            d.embedding = rng.standard_normal(16).astype("float32")
            d.tags["embedded_by"] = "Embed"
'''

FLOW = """\
version: 1
with:
  name: compose-test
  protocol: http
  port_http: {http}
  port_native: {native}
pods:
  - name: embed
    uses: Embed
    py_modules: [executor.py]
    parallel: 2
  - name: idx
    uses: _index
    shards: 2
    uses_with: {{top_k: 3}}
"""


FAST_HEALTH = "fast-health.yaml"
"""A compose override the test adds beside the exported file: the same health probes, run every
second instead of every 10 s. The probe, what it checks and when a service counts as healthy are
the export's; only how often the engine asks is the test's. This engine (20.10) has no
`start_interval`, so each wait for `healthy` below would otherwise take a whole interval."""


def _fast_health(out) -> None:
    services = yaml.safe_load((out / "compose.yaml").read_text())["services"]
    assert all("healthcheck" in svc for svc in services.values())
    (out / FAST_HEALTH).write_text(yaml.safe_dump(
        {"services": {name: {"healthcheck": {"interval": "1s"}} for name in services}}))


def _run_compose(project: str, cwd, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker-compose", "-p", project, "-f", "compose.yaml", "-f", FAST_HEALTH, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _failed(proc: subprocess.CompletedProcess) -> str:
    return f"{' '.join(proc.args)} failed:\n{proc.stdout}\n{proc.stderr}"


def _compose(project: str, cwd, *args: str, timeout: float = 300) -> str:
    proc = _run_compose(project, cwd, *args, timeout=timeout)
    assert proc.returncode == 0, _failed(proc)
    return proc.stdout


def _down(engine, project: str, cwd, *args: str) -> list[str]:
    """`docker-compose down ARGS`; returns the networks the engine kept by its miscount, if any.

    Compose stops at a network the engine refuses to remove, before the volumes. That refusal is let
    through only as the engine's miscount (see ENGINE_MISCOUNT) and only once no container of the
    project is left; the rest of `down` is then done here, and the caller checks that everything
    else `down` had to remove is gone.
    """
    proc = _run_compose(project, cwd, "down", *args)
    if proc.returncode == 0:
        return []
    left = _owned(engine, project)
    assert ENGINE_MISCOUNT in proc.stderr and not left["containers"], _failed(proc)
    kept = [name for name in left["networks"] if not remove_network(engine.networks.get(name))]
    if not kept:  # the engine's count caught up: compose finishes its own work
        _compose(project, cwd, "down", *args)
    elif "-v" in args:
        for volume in left["volumes"]:
            engine.volumes.get(volume).remove()
    return kept


def _owned(engine, project: str) -> dict[str, list[str]]:
    flt = {"label": f"com.docker.compose.project={project}"}
    return {"containers": [c.name for c in engine.containers.list(all=True, filters=flt)],
            "networks": [n.name for n in engine.networks.list(filters=flt)],
            "volumes": [v.name for v in engine.volumes.list(filters=flt)]}


def _wait_healthy(engine, project: str, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    flt = {"label": f"com.docker.compose.project={project}"}
    while True:
        states = {c.name: (c.attrs["State"].get("Health") or {}).get("Status")
                  for c in engine.containers.list(all=True, filters=flt)}
        if len(states) == count and all(s == "healthy" for s in states.values()):
            return
        assert time.monotonic() < deadline, f"not healthy in {timeout:g}s: {states}"
        time.sleep(1)


def _ip(engine, project: str, service: str) -> str:
    flt = {"label": [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]}
    (c,) = engine.containers.list(filters=flt)
    (net,) = c.attrs["NetworkSettings"]["Networks"].values()
    return net["IPAddress"]


@pytest.fixture
def project(engine, tmp_path):
    """A compose project of this test's own; all it made is removed afterwards, even on failure."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed; run .ci/setup.d/20-docker.sh")
    name = f"jfexport{uuid.uuid4().hex[:10]}"
    out = tmp_path / "out"
    made: list = []
    yield name, out, made
    if (out / "compose.yaml").exists():
        subprocess.run(["docker-compose", "-p", name, "down", "-v", "--remove-orphans", "-t", "5"], cwd=out,
                       capture_output=True, timeout=300)
    for c in made:
        c.remove(force=True)
    flt = {"label": f"com.docker.compose.project={name}"}
    for c in engine.containers.list(all=True, filters=flt):
        c.remove(force=True)
    for n in engine.networks.list(filters=flt):
        remove_network(n)
    for v in engine.volumes.list(filters=flt):
        v.remove(force=True)
    for img in engine.images.list(name="jinad-fab-export/compose-test"):
        engine.images.remove(img.id, force=True)


def _search_is_exact(client: Client, texts: list[str]) -> None:
    found = client.post("/search", DocumentArray([Document(text=t) for t in texts]))
    assert [d.text for d in found] == texts
    for d in found:
        # both shards answered, merged into the top 3; the indexed twin first, at distance 0
        assert len(d.matches) == 3
        assert d.matches[0].text == d.text and d.matches[0].scores["euclidean"] == 0.0
        assert d.matches[0].tags["embedded_by"] == "Embed"


def test_a_flow_exported_to_compose_runs_restarts_and_keeps_its_index(engine, wheelhouse, tmp_path, project):
    name, out, made = project
    http, native = free_port(), free_port()
    flow_dir = tmp_path / "flow"
    flow_dir.mkdir()
    (flow_dir / "executor.py").write_text(EXECUTOR)
    (flow_dir / "flow.yml").write_text(FLOW.format(http=http, native=native))

    result = CliRunner().invoke(cli, ["export", "compose", str(flow_dir / "flow.yml"), "-o", str(out),
                                      "--base-image", BASE_IMAGE,
                                      "--pip-args", f"--no-index --find-links {wheelhouse}"])
    assert result.exit_code == 0, result.output
    services = ["gateway", "embed", "embed-peas-0", "embed-peas-1", "idx", "idx-shard-0", "idx-shard-1"]
    _fast_health(out)
    _compose(name, out, "up", "-d", "--build", timeout=1200)
    _wait_healthy(engine, name, len(services))

    texts = [f"document number {i}" for i in range(40)]
    with Client(port=http, protocol="http", timeout=60) as client:
        indexed = client.post("/index", DocumentArray([Document(id=f"d{i}", text=t) for i, t in enumerate(texts)]))
        assert len(indexed) == 40
        _search_is_exact(client, texts[:8])
    with Client(port=native, protocol="native", timeout=60) as client:
        _search_is_exact(client, texts[8:16])

    # The head every Pea of `idx` and `embed` connects to comes back on another IP under the same
    # name: a placeholder takes its old address first, so the engine has to give it a new one.
    old_ip = _ip(engine, name, "idx")
    _compose(name, out, "rm", "-s", "-f", "idx")
    made.append(engine.containers.run(BASE_IMAGE, ["sleep", "600"], detach=True, network=f"{name}_default"))
    _compose(name, out, "up", "-d", "idx")
    assert _ip(engine, name, "idx") != old_ip
    _wait_healthy(engine, name, len(services))
    with Client(port=http, protocol="http", timeout=60) as client:
        _search_is_exact(client, texts[16:24])
    made.pop().remove(force=True)

    # down without -v: nothing runs, the shards' volumes stay, and `up` finds the index again
    kept = _down(engine, name, out, "-t", "5")
    left = _owned(engine, name)
    assert left["containers"] == [] and left["networks"] == kept
    assert sorted(left["volumes"]) == [f"{name}_idx-shard-0-data", f"{name}_idx-shard-1-data"]
    _compose(name, out, "up", "-d")
    _wait_healthy(engine, name, len(services))
    with Client(port=http, protocol="http", timeout=60) as client:
        _search_is_exact(client, texts[24:40])

    kept = _down(engine, name, out, "-v", "-t", "5")
    assert _owned(engine, name) == {"containers": [], "networks": kept, "volumes": []}


"""The docker runtime on a real engine, without a daemon: the runtime contract, GPU requests, GC."""

from __future__ import annotations

import contextlib
import json
import uuid

import docker.errors
import pytest

from jinad_fab.daemon.runtimes.base import LaunchSpec, WorkspaceContext
from jinad_fab.daemon.runtimes.docker import DockerOptions, DockerRuntime

# The one runtime contract, run here against docker with the locally built base image.
from tests.integration.daemon.test_runtime_contract import (
    test_build_start_status_stop_adopt,  # noqa: F401
    test_failed_build_raises_build_error,  # noqa: F401
    test_sweep_removes_what_no_record_owns_and_nothing_else,  # noqa: F401
)
from tests.support.docker import BASE_IMAGE, leftovers, purge

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def runtime(tmp_path, engine, wheelhouse):
    daemon_id = f"jinad-test-{uuid.uuid4().hex[:12]}"
    rt = DockerRuntime(tmp_path / "home" / "runtimes" / "docker", DockerOptions(
        daemon_id=daemon_id, base_image=BASE_IMAGE, pip_args=("--no-index", "--find-links", str(wheelhouse)),
    ))
    assert rt.available()
    yield rt
    rt.close()
    purge(engine, daemon_id)


def _bare_workspace(tmp_path, engine, rt) -> WorkspaceContext:
    """A workspace whose 'image' is the base image itself: enough to create containers quickly."""
    wid = "jworkspace-" + uuid.uuid4().hex
    network = rt._ensure_network(wid)
    return WorkspaceContext(id=wid, root=tmp_path, env_dir=tmp_path / "env",
                            build_info={"image": BASE_IMAGE, "network": network, "user": None})


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("all", {"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]]}),
        (2, {"Driver": "nvidia", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]]}),
        ("0,3", {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "3"], "Capabilities": [["gpu"]]}),
    ],
)
def test_gpus_become_the_exact_device_request(runtime, engine, tmp_path, gpus, expected):
    # No GPU here: create the container (never start it) and read back what the engine stored.
    ws = _bare_workspace(tmp_path, engine, runtime)
    spec = LaunchSpec(object_id="jpea-" + uuid.uuid4().hex, kind="pea",
                      status_file=tmp_path / "run" / "pea.json", gpus=gpus)
    container = runtime.create(ws, spec, tmp_path / "pea.log")
    try:
        container.reload()
        (request,) = container.attrs["HostConfig"]["DeviceRequests"]
        assert {k: request.get(k) for k in expected} == expected
        assert container.attrs["HostConfig"]["Privileged"] is False
        assert "no-new-privileges" in container.attrs["HostConfig"]["SecurityOpt"]
    finally:
        container.remove(force=True)


def test_no_gpus_no_device_request_and_limits_apply(engine, tmp_path):
    daemon_id = f"jinad-test-{uuid.uuid4().hex[:12]}"
    rt = DockerRuntime(tmp_path / "state", DockerOptions(daemon_id=daemon_id, cpus=0.5, memory="256m"))
    try:
        ws = _bare_workspace(tmp_path, engine, rt)
        spec = LaunchSpec(object_id="jpea-" + uuid.uuid4().hex, kind="pea",
                          status_file=tmp_path / "run" / "pea.json")
        container = rt.create(ws, spec, None)
        host_config = container.attrs["HostConfig"]
        assert not host_config.get("DeviceRequests")
        assert host_config["NanoCpus"] == 500_000_000 and host_config["Memory"] == 256 * 1024 * 1024
        assert container.labels["jinad.workspace"] == ws.id and container.labels["jinad.kind"] == "pea"
    finally:
        purge(engine, daemon_id)


def test_a_flows_control_port_is_published_on_loopback_only(engine, tmp_path):
    # whoever reaches a Flow's control socket can scale and roll it: only its own daemon may, so it
    # is never published where the Flow's gateway is (an operator may publish those on every address)
    daemon_id = f"jinad-test-{uuid.uuid4().hex[:12]}"
    rt = DockerRuntime(tmp_path / "state", DockerOptions(daemon_id=daemon_id, publish_host="127.0.0.2"))
    try:
        ws = _bare_workspace(tmp_path, engine, rt)
        spec = LaunchSpec(object_id="jflow-" + uuid.uuid4().hex, kind="flow", flow_yaml="flow.yml",
                          status_file=tmp_path / "run" / "flow.json")
        container = rt.create(ws, spec, None)
        cmd = container.attrs["Config"]["Cmd"]
        port = {k: int(cmd[cmd.index(f"--{k}") + 1]) for k in ("port-http", "port-native", "port-ctrl")}
        assert cmd[cmd.index("--ctrl-host") + 1] == "0.0.0.0"  # inside: reachable through the publishing
        bound = {int(b["HostPort"]): b["HostIp"] for bs in container.attrs["HostConfig"]["PortBindings"].values()
                 for b in bs}
        assert bound == {port["port-http"]: "127.0.0.2", port["port-native"]: "127.0.0.2",
                         port["port-ctrl"]: "127.0.0.1"}
    finally:
        purge(engine, daemon_id)


def test_sweep_removes_what_no_record_owns(runtime, engine, tmp_path):
    kept, dropped = _bare_workspace(tmp_path, engine, runtime), _bare_workspace(tmp_path, engine, runtime)
    ids = {}
    for ws in (kept, dropped):
        spec = LaunchSpec(object_id="jpea-" + uuid.uuid4().hex, kind="pea",
                          status_file=tmp_path / ws.id / "pea.json")
        runtime.create(ws, spec, None)
        ids[ws.id] = spec.object_id
    removed = runtime.sweep(live_objects={ids[kept.id]}, live_workspaces={kept.id})
    assert sorted(r.split()[0] for r in removed) == ["container", "network"]
    left = leftovers(engine, runtime.daemon_id)
    assert left["networks"] == [f"jinad-{kept.id}"]
    assert left["containers"] == [f"jinad-{ids[kept.id]}"]
    assert json.dumps(left)  # plain data for the report


def test_sweep_reports_a_network_removed_only_once_it_is_gone(runtime, engine, tmp_path):
    """A dropped workspace's network that something still uses stays, and is not reported as
    removed (the sweep said "network ..." on every round while it stayed)."""
    ws = _bare_workspace(tmp_path, engine, runtime)
    spec = LaunchSpec(object_id="jpea-" + uuid.uuid4().hex, kind="pea", status_file=tmp_path / "pea.json")
    runtime.create(ws, spec, None)
    (network,) = leftovers(engine, runtime.daemon_id)["networks"]
    user = engine.containers.run(BASE_IMAGE, ["sleep", "600"], detach=True, network=network)  # not the daemon's
    try:
        removed = runtime.sweep(live_objects=set(), live_workspaces=set())
        assert f"container jinad-{spec.object_id}" in removed
        assert [r for r in removed if r.startswith("network")] == []
        assert leftovers(engine, runtime.daemon_id)["networks"] == [network]
    finally:
        user.remove(force=True)
    assert [r for r in runtime.sweep(live_objects=set(), live_workspaces=set()) if r.startswith("network")] == [
        f"network {network}"]
    assert leftovers(engine, runtime.daemon_id)["networks"] == []


def test_sweep_keeps_the_intermediate_container_of_a_build_in_progress(runtime, engine, tmp_path):
    """A build step's container carries the image's labels (kind "image", its workspace as owner);
    a sweep during the build removed it and the build failed with "No such container"."""
    ws = _bare_workspace(tmp_path, engine, runtime)
    step = engine.containers.create(BASE_IMAGE, ["true"],
                                    labels=runtime._labels(ws.id, ws.id, "image"))
    try:
        runtime.sweep(live_objects=set(), live_workspaces={ws.id})
        step.reload()  # still there while its workspace is live
        runtime.sweep(live_objects=set(), live_workspaces=set())
        with pytest.raises(docker.errors.NotFound):
            step.reload()  # and swept once the workspace is gone
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            step.remove(force=True)

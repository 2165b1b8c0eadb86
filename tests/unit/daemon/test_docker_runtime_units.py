"""The docker runtime's pure parts: GPU requests, port publishing, reproducible contexts and wheels."""

from __future__ import annotations

import json
import zipfile

import pytest

from jinad_fab import gpus
from jinad_fab.daemon.runtimes import docker as rt
from jinad_fab.daemon.runtimes import wheelhouse
from jinad_fab.daemon.runtimes.base import LaunchSpec
from jinad_fab.errors import BadConfig


@pytest.mark.parametrize(
    ("value", "parsed", "request_kwargs", "cuda"),
    [
        (None, None, None, ""),
        ("all", "all", {"driver": "nvidia", "capabilities": [["gpu"]], "count": -1}, None),
        (2, 2, {"driver": "nvidia", "capabilities": [["gpu"]], "count": 2}, "0,1"),
        ("1", 1, {"driver": "nvidia", "capabilities": [["gpu"]], "count": 1}, "0"),
        ("0,2", ("0", "2"), {"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["0", "2"]}, "0,2"),
        (["GPU-3f2a"], ("GPU-3f2a",), {"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["GPU-3f2a"]},
         "GPU-3f2a"),
        ("device=1", ("1",), {"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["1"]}, "1"),
    ],
)
def test_gpus_map_to_one_device_request_and_one_cuda_value(value, parsed, request_kwargs, cuda):
    assert gpus.parse(value) == parsed
    assert gpus.device_request_kwargs(parsed) == request_kwargs
    assert gpus.cuda_visible_devices(parsed) == cuda


@pytest.mark.parametrize("value", [-1, True, "0,;rm", ",", {"a": 1}])
def test_bad_gpu_requests_are_refused(value):
    with pytest.raises(BadConfig):
        gpus.parse(value)


def _launched(command: list[str]):
    """What the object in the container will see: its command parsed by launch's own parser."""
    from jinad_fab.launch.__main__ import parser

    assert command[:3] == ["python", "-m", "jinad_fab.launch"]
    return parser().parse_args(command[3:])


def test_objects_bind_all_inside_and_get_fixed_published_ports(tmp_path):
    runtime = rt.DockerRuntime(tmp_path / "state", rt.DockerOptions(daemon_id="jinad-test-units"))
    flow = LaunchSpec(object_id="jflow-" + "a" * 32, kind="flow", status_file=tmp_path / "run" / "f.json",
                      flow_yaml="f.yml", host="127.0.0.1", ports={"port_http": 5001})
    command, ports = runtime.command_for(flow)
    ns = _launched(command)
    assert ns.kind == "flow" and ns.yaml == "f.yml" and ns.host == "0.0.0.0" and ns.log_json
    assert ns.port_http == 5001 and ns.port_native > 0
    assert ports == {"port_http": 5001, "port_native": ns.port_native, "port_ctrl": ns.port_ctrl}
    assert ns.port_ctrl > 0 and ns.ctrl_host == "0.0.0.0"  # its control socket: published on loopback alone
    assert ns.status_file == "/jinad/status/f.json"  # its own mounted directory, not the host's path

    pod = LaunchSpec(object_id="jpod-" + "b" * 32, kind="pod", status_file=tmp_path / "run" / "p.json",
                     args={"name": "p", "uses": "_pass", "parallel": 2}, host="127.0.0.1", ports={"port_in": 0})
    command, ports = runtime.command_for(pod)
    ns = _launched(command)
    values = json.loads(ns.args_json)
    assert values["host"] == "0.0.0.0" and values["workspace"] == "/workspace"
    assert values["name"] == "p" and values["parallel"] == 2
    assert values["port_in"] > 0 and values["port_ctrl"] > 0
    assert ports == {"port_in": values["port_in"], "port_ctrl": values["port_ctrl"]}


def test_a_flow_needs_its_yaml(tmp_path):
    with pytest.raises(ValueError):
        LaunchSpec(object_id="jflow-" + "a" * 32, kind="flow", status_file=tmp_path / "f.json")


def test_the_build_context_is_reproducible(tmp_path):
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "link").symlink_to("/etc/passwd")
    one, two = tmp_path / "1.tar", tmp_path / "2.tar"
    rt._write_context(one, [("workspace", root)], {"Dockerfile": b"FROM x\n"})
    (root / "sub" / "a.txt").touch()  # a new mtime alone changes nothing
    rt._write_context(two, [("workspace", root)], {"Dockerfile": b"FROM x\n"})
    assert rt._sha256(one) == rt._sha256(two)
    import tarfile

    with tarfile.open(one) as tar:
        assert "workspace/link" not in tar.getnames()  # a symlink could point out of the workspace
    (root / "sub" / "a.txt").write_text("b")
    rt._write_context(two, [("workspace", root)], {"Dockerfile": b"FROM x\n"})
    assert rt._sha256(one) != rt._sha256(two)


def test_the_own_wheel_is_reproducible_and_installable_metadata(tmp_path):
    first = wheelhouse.self_wheel(tmp_path / "a")
    second = wheelhouse.self_wheel(tmp_path / "b")
    assert first.name == f"jinad_fab-{wheelhouse.version()}-py3-none-any.whl"
    with zipfile.ZipFile(first) as one, zipfile.ZipFile(second) as two:
        names = one.namelist()
        assert "jinad_fab/templating.py" in names and not any("__pycache__" in n for n in names)
        meta = one.read(f"jinad_fab-{wheelhouse.version()}.dist-info/METADATA").decode()
        assert "Name: jinad-fab" in meta and f"Version: {wheelhouse.version()}" in meta
        assert {n: one.read(n) for n in names} == {n: two.read(n) for n in two.namelist()}

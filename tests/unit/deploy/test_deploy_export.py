"""Exports without an engine: Kubernetes manifests against the API schemas, the wiring, compose's shape.

The manifests are validated offline by `kubernetes-validate` against the schemas of a current
Kubernetes release, strictly (an unknown field is an error). The wiring check reads what every
container runs (its command names its service), computes that service's arguments the way the
container does (from the Flow in the ConfigMap) and checks that each address it is given names a
Service of the export, on a port that Service exposes.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.commands.export import launcher
from jinad_fab.cli.main import cli
from jinad_fab.deploy import export
from jinad_fab.flow.static import NotExportable, plan, service
from jinad_fab.flow.yaml import load_flow

kubernetes_validate = pytest.importorskip("kubernetes_validate.utils")

FLOW = """\
version: 1
with:
  name: Shop Search
  protocol: http
  port_http: 8081
  env: {LOG_LEVEL: info}
pods:
  - name: encode_text
    uses: _pass
    parallel: 3
    gpus: 1
    resources: {cpu: 500m, memory: 1Gi}
  - name: keywords
    uses: _pass
    needs: gateway
  - name: idx
    uses: _index
    shards: 2
    needs: [encode_text, keywords]
  - name: rank
    uses: _pass
"""


@pytest.fixture
def flow_file(tmp_path):
    path = tmp_path / "flow.yml"
    path.write_text(FLOW)
    (tmp_path / "requirements.txt").write_text("")
    return path


def _k8s(flow_file, namespace=None):
    p = plan(load_flow(str(flow_file)), "kubernetes")
    img = export.image(p["name"], flow_file.parent, base_image="python:3.11-slim")
    objects = export.kubernetes(p, img, flow_file.read_text(), launcher(), namespace=namespace)
    return p, img, objects


def test_every_manifest_is_valid_against_the_kubernetes_api_schemas(flow_file, tmp_path):
    _, _, objects = _k8s(flow_file, namespace="search")
    files = export.kubernetes_files(objects, "search")
    version = kubernetes_validate.latest_version()
    out = tmp_path / "k8s"
    export.write(out, files)
    for name in files:
        if name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all((out / name).read_text()):
            kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema error
    # a broken object is caught: the validation is not a check that cannot fail
    broken = json.loads(json.dumps(objects[-1]))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
    kust = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kust["namespace"] == "search"
    assert kust["resources"] == [n for n in files if n != "kustomization.yaml"]
    assert all(o["metadata"].get("namespace") == "search" for o in objects if o["kind"] != "Namespace")


def test_every_address_a_pea_is_given_resolves_to_a_service_of_the_export(flow_file):
    _, _, objects = _k8s(flow_file)
    services = {o["metadata"]["name"]: {p["port"] for p in o["spec"].get("ports", [])}
                for o in objects if o["kind"] == "Service"}
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    flow_path = config_map["metadata"]["name"]
    assert flow_path == "shop-search-flow"
    # what a container does at start: load the Flow it is given, compute the plan, take its role's part
    flow_file.write_text(config_map["data"]["flow.yml"])
    in_container = plan(load_flow(str(flow_file)), "kubernetes")
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == len(in_container["services"])
    checked = 0
    for w in workloads:
        (container,) = w["spec"]["template"]["spec"]["containers"]
        cmd = container["command"]
        role = cmd[cmd.index("--role") + 1]
        assert cmd[cmd.index("--yaml") + 1] == export.FLOW_PATH
        args = service(in_container, role)["args"]
        given = [args["in_connect"]] if args.get("in_connect") else []
        for target in args.get("targets") or []:
            given += [target["bind"]] if isinstance(target, dict) else target
        for address in given:
            host, port = re.fullmatch(r"tcp://([^:]+):(\d+)", address).groups()
            if host == "0.0.0.0":  # a head's own bound output: its replicas connect to its Service
                assert int(port) in services[role], (role, address)
            else:
                assert host in services, f"{role} is given {address}, which no Service names"
                assert int(port) in services[host], f"{role} is given {address}; {host} exposes {services[host]}"
            checked += 1
        # and what it binds, its Service exposes (a Pea that binds `in` is reached through it)
        if args.get("port_in"):
            assert args["port_in"] in services[role]
    assert checked >= 10


def test_stateful_shards_gpus_and_requests(flow_file):
    p, img, objects = _k8s(flow_file)
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    for s in (0, 1):
        sts = by[("StatefulSet", f"idx-shard-{s}")]
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        assert sts["spec"]["serviceName"] == f"idx-shard-{s}"
        mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "data", "mountPath": export.DATA_DIR} in mounts
    enc = by[("Deployment", "encode-text-peas")]
    assert enc["spec"]["replicas"] == 3
    (c,) = enc["spec"]["template"]["spec"]["containers"]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": 1}}
    assert {"name": "LOG_LEVEL", "value": "info"} in c["env"]
    assert c["image"] == img.tag and c["livenessProbe"]["exec"]["command"][-1] == "tcp://127.0.0.1:5556"
    gw = by[("Deployment", "gateway")]["spec"]["template"]["spec"]["containers"][0]
    assert gw["readinessProbe"]["httpGet"] == {"path": "/alive", "port": 8081}
    assert {p["port"] for p in by[("Service", "gateway")]["spec"]["ports"]} >= {8081}


def test_compose_has_a_service_per_pea_group_volumes_and_gpu_reservations(flow_file):
    p = plan(load_flow(str(flow_file)), "compose")
    img = export.image(p["name"], flow_file.parent)
    doc = export.compose(p, img, launcher(), publish_host="127.0.0.1")
    svcs = doc["services"]
    assert set(svcs) == {"gateway", "encode-text", "encode-text-peas-0", "encode-text-peas-1", "encode-text-peas-2",
                         "keywords", "idx", "idx-shard-0", "idx-shard-1", "rank"}
    assert svcs["gateway"]["build"] == {"context": "./image"}
    assert svcs["gateway"]["ports"] == ["127.0.0.1:8081:8081", "127.0.0.1:5570:5570"]
    assert all(s["restart"] == "on-failure" and s["image"] == img.tag for s in svcs.values())
    assert svcs["encode-text-peas-2"]["command"][-2:] == ["--replica", "2"]
    assert svcs["encode-text-peas-0"]["deploy"]["resources"]["reservations"] == {
        "memory": str(1024**3), "devices": [{"driver": "nvidia", "capabilities": ["gpu"], "count": 1}]}
    assert set(doc["volumes"]) == {"idx-shard-0-data", "idx-shard-1-data"}
    assert {"type": "volume", "source": "idx-shard-1-data", "target": export.DATA_DIR} in svcs["idx-shard-1"]["volumes"]
    assert svcs["rank"]["healthcheck"]["test"][:5] == ["CMD", "python", "-m", "jinad_fab.launch", "probe"]


@pytest.mark.parametrize(("extra", "engine", "reason"), [
    ("    host: gpu-1:8000\n", "compose", "pinned to the jinad host 'gpu-1:8000'"),
    ("    gpus: '0,2'\n", "kubernetes", "Kubernetes schedules nvidia.com/gpu by count only"),
    ("    py_modules: [../elsewhere.py]\n", "compose", "not inside the Flow's folder"),
    ("    workspace: /srv/data\n", "kubernetes", "a path of this machine"),
    ("    dump_path: /srv/dumps\n", "compose", "dump_path '/srv/dumps' is a path of this machine"),
    ("    uses: _index\n    parallel: 2\n", "kubernetes", "share one store"),
    ("with:\n  secure: true\n", "compose", "write them into its files in clear"),
])
def test_a_flow_the_engine_cannot_run_is_refused_with_the_reason(tmp_path, extra, engine, reason):
    path = tmp_path / "flow.yml"
    if extra.startswith("with:"):
        path.write_text("version: 1\n" + extra + "pods:\n  - name: a\n")
    else:
        path.write_text("version: 1\npods:\n  - name: a\n" + extra)
    with pytest.raises(NotExportable, match=re.escape(reason)) as info:
        plan(load_flow(str(path)), engine)
    assert info.value.engine == engine and len(info.value.reasons) == 1
    result = CliRunner().invoke(cli, ["render", engine, str(path)])
    assert result.exit_code != 0 and reason in result.output


def test_render_prints_the_export_and_lists_its_objects(flow_file):
    runner = CliRunner()
    text = runner.invoke(cli, ["render", "compose", str(flow_file)], catch_exceptions=False).output
    doc = yaml.safe_load(text)
    assert "gateway" in doc["services"]
    listed = json.loads(runner.invoke(cli, ["render", "kubernetes", str(flow_file), "--json"],
                                      catch_exceptions=False).output)
    kinds = [(o["kind"], o["name"]) for o in listed["objects"]]
    assert ("ConfigMap", "shop-search-flow") in kinds and ("StatefulSet", "idx-shard-1") in kinds
    assert listed["image"].startswith("jinad-fab-export/shop-search:")
    assert not (flow_file.parent / "image").exists()  # render writes nothing


def test_the_image_tag_follows_the_workspace_content(flow_file):
    name = "shop"
    first = export.image(name, flow_file.parent).tag
    assert export.image(name, flow_file.parent).tag == first
    (flow_file.parent / "executor.py").write_text("# changed\n")
    assert export.image(name, flow_file.parent).tag != first


def test_kubernetes_runs_the_images_and_commands_the_compose_test_runs(flow_file):
    compose_plan = plan(load_flow(str(flow_file)), "compose")
    img = export.image(compose_plan["name"], flow_file.parent)
    services = export.compose(compose_plan, img, launcher())["services"]
    _, k8s_img, objects = _k8s(flow_file)
    assert k8s_img.tag == img.tag
    for w in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        (c,) = w["spec"]["template"]["spec"]["containers"]
        name = w["metadata"]["name"]
        twin = services.get(name) or services[f"{name}-0"]  # compose numbers the replicas
        assert c["image"] == twin["image"]
        assert c["command"] == [a for a in twin["command"] if a not in ("--replica", "0")]
        assert ["CMD", *c["livenessProbe"]["exec"]["command"]] == twin["healthcheck"]["test"]


def test_an_export_folder_inside_the_flow_folder_is_not_part_of_the_image(flow_file):
    before = export.image("shop", flow_file.parent).tag
    out = flow_file.parent / "deploy"
    export.write(out, {"compose.yaml": "services: {}\n"})
    assert export.image("shop", flow_file.parent, exclude=[out]).tag == before
    assert export.image("shop", flow_file.parent).tag != before


def test_an_export_never_writes_the_flow_s_secrets(tmp_path):
    path = tmp_path / "flow.yml"
    path.write_text("version: 1\nwith:\n  token: s3cret-daemon-token\npods:\n  - name: a\n    uses: _index\n")
    for engine in ("compose", "kubernetes"):
        listed = CliRunner().invoke(cli, ["render", engine, str(path)], catch_exceptions=False).output
        assert "s3cret" not in listed
        from jinad_fab.cli.commands.export import build

        files = build(engine, path, base_image=None)["files"]
        assert not any("s3cret" in text for text in files.values())
        assert any("_index" in text for text in files.values())  # the Flow itself is there

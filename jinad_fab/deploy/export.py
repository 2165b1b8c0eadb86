"""Write a statically wired Flow as a Docker Compose project or as Kubernetes manifests.

The input is a plan (:func:`jinad_fab.flow.static.plan`: one service per group of identical
processes, with its role, ports and peers as service names) plus the Flow's folder. Both engines
get the same things:

* one image for the Flow's folder (its workspace), from the workspace Dockerfile template the
  docker runtime of ``jinad`` builds (:func:`jinad_fab.templating.render_dockerfile`) and a
  wheelhouse gathered on this machine, so the build needs no package index;
* the Flow file itself (a bind mount in compose, a ConfigMap in Kubernetes) at :data:`FLOW_PATH`;
* the same command in every container, the launch program's ``static --yaml FLOW_PATH --role
  SERVICE``: each container computes the plan from the Flow again and runs its part;
* the same health check, its ``probe`` on the service's loopback control port (Kubernetes asks
  the Gateway's ``/alive`` for readiness).

Those two command lines come from the caller (a :class:`Launcher`): this layer writes files and
knows nothing of the program that runs in the containers.

Compose: one service per plan service (a numbered one per replica), ``restart: on-failure``,
GPUs as device reservations, the Gateway's ports published on ``publish_host`` (loopback by
default: publishing on every interface is the operator's choice), a named volume per ``_index``
Pea, memory reservations (compose has none for CPU outside swarm). Kubernetes: a Deployment per stateless service, a StatefulSet with a volume claim per
``_index`` shard, a Service per Pod entry and for the Gateway, a ConfigMap with the Flow, probes,
``nvidia.com/gpu`` limits, resource requests, and a ``kustomization.yaml``.

YAML is written by PyYAML's safe dumper (:func:`jinad_fab.safe_yaml.dumps`); nothing here
formats YAML by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from .. import gpus as _gpus
from .. import jinadfile, safe_yaml, templating, wheelhouse
from ..errors import BadConfig

FLOW_DIR = "/jinad/flow"
FLOW_PATH = f"{FLOW_DIR}/flow.yml"
DATA_DIR = "/workspace/.jinad-data"
IMAGE_REPO = "jinad-fab-export"
MANAGED_BY = "jinad-fab"
_SKIP_DIRS = {".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv", "venv"}


# ---- the image -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Image:
    """The image every service runs: its tag and the build context the export writes."""

    tag: str
    dockerfile: str
    files: tuple[tuple[str, pathlib.Path], ...]
    """(path inside the context, file on this machine) for the workspace part of the context."""
    requirements: str


def workspace_files(root: pathlib.Path, exclude: Iterable[pathlib.Path] = ()) -> list[tuple[str, pathlib.Path]]:
    """The Flow's folder as it goes into the image (sorted; caches, VCS data and `exclude` left out)."""
    root = root.resolve()
    skip = [p.resolve() for p in exclude]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = pathlib.Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and (here / d).resolve() not in skip)
        for name in sorted(filenames):
            path = here / name
            if name.endswith((".pyc", ".pyo")) or not path.is_file():
                continue
            out.append((path.relative_to(root).as_posix(), path))
    return out


def image(flow_name: str, root: pathlib.Path, *, base_image: str | None = None,
          exclude: Iterable[pathlib.Path] = ()) -> Image:
    """The image of the Flow's folder: its Dockerfile (the workspace template) and a content tag.

    The tag hashes the Dockerfile, this jinad-fab (its wheel) and every workspace file, so a
    changed Executor or a changed jinad-fab is a new tag and an unchanged Flow the same one.
    """
    config = jinadfile.load(root)
    if config.dockerfile:
        raise BadConfig(f".jinad names its own dockerfile {config.dockerfile!r}; an export builds the "
                        "workspace template's image (remove `dockerfile` from .jinad to export)")
    requirements = jinadfile.read_requirements(root, config)
    dockerfile = templating.render_dockerfile(config, version=wheelhouse.version(), base_image=base_image,
                                              has_requirements=bool(requirements), wheelhouse=True)
    files = workspace_files(root, exclude)
    digest = hashlib.sha256(dockerfile.encode())
    with tempfile.TemporaryDirectory(prefix="jinad-fab-export-") as tmp:
        digest.update(wheelhouse.self_wheel(pathlib.Path(tmp)).read_bytes())
    digest.update(requirements.encode())
    for rel, path in files:
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    tag = f"{IMAGE_REPO}/{_label(flow_name)}:{digest.hexdigest()[:16]}"
    return Image(tag=tag, dockerfile=dockerfile, files=tuple(files), requirements=requirements)


def write_image_context(dest: pathlib.Path, img: Image, *, python: str | None = None,
                        pip_args: Iterable[str] = (), cache: pathlib.Path | None = None,
                        log=None) -> None:
    """Write the build context: ``Dockerfile``, ``wheels/`` (gathered here) and ``workspace/``."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "workspace").mkdir(parents=True)
    (dest / "Dockerfile").write_text(img.dockerfile, encoding="utf-8")
    for rel, path in img.files:
        target = dest / "workspace" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    # the mount point of an _index Pea's volume: made in the image, so the volume starts out owned
    # by the image's user (Docker copies a mount point's content and owner into a new named volume)
    keep = dest / "workspace" / pathlib.PurePosixPath(DATA_DIR).name / ".keep"
    keep.parent.mkdir(exist_ok=True)
    keep.write_text("")
    wheels = dest / "wheels"
    wheels.mkdir()
    with tempfile.TemporaryDirectory(prefix="jinad-fab-export-") as tmp:
        own = wheelhouse.self_wheel(pathlib.Path(tmp) / "self")
        requirements = None
        if img.requirements:
            requirements = wheels / "requirements.txt"
            requirements.write_text(img.requirements, encoding="utf-8")
        py = python or f"{sys.version_info.major}.{sys.version_info.minor}"
        wheelhouse.fill(wheels, cache or pathlib.Path(tmp) / "cache", own, requirements, py,
                        log or (lambda source, line: None), pip_args=tuple(pip_args))
        if not (wheels / own.name).exists():
            shutil.copy2(own, wheels / own.name)


# ---- shared pieces ---------------------------------------------------------------------------------


def _label(name: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label or "flow"


@dataclasses.dataclass(frozen=True)
class Launcher:
    """The two command lines of a container: ``run(role, replica)`` runs the service ``role`` of the
    Flow at :data:`FLOW_PATH`; ``probe(port)`` exits 0 when the control socket on loopback ``port``
    answers."""

    run: Callable[[str, int | None], list[str]]
    probe: Callable[[int], list[str]]


def _replica_names(svc: dict[str, Any]) -> list[tuple[str, int | None]]:
    if svc["replicas"] == 1:
        return [(svc["name"], None)]
    return [(f"{svc['name']}-{r}", r) for r in range(svc["replicas"])]


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")
_BYTES = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def _cpus(value: Any) -> float:
    """A Kubernetes CPU quantity ('500m', 2, '1.5') as compose's number of CPUs."""
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def _memory(value: Any) -> int:
    """A Kubernetes memory quantity ('1Gi', '512M', 1048576) in bytes, for compose."""
    m = _QUANTITY.match(str(value))
    if not m or m.group(2) not in _BYTES:
        raise BadConfig(f"resources: memory {value!r} is not a quantity like 512Mi or 1G")
    return int(float(m.group(1)) * _BYTES[m.group(2)])


def check_resources(plan: dict[str, Any]) -> None:
    for svc in plan["services"]:
        res = svc.get("resources") or {}
        try:
            if "cpu" in res:
                _cpus(res["cpu"])
        except ValueError as exc:
            raise BadConfig(f"Pod {svc['pod']!r}: resources: cpu {res['cpu']!r} is not a quantity like 500m "
                            "or 2") from exc
        if "memory" in res:
            _memory(res["memory"])


# ---- Docker Compose -------------------------------------------------------------------------------


def compose(plan: dict[str, Any], img: Image, launcher: Launcher, *, publish_host: str = "127.0.0.1",
            build_context: str = "./image", flow_file: str = "./flow.yml") -> dict[str, Any]:
    """The compose document of a plan (a mapping for PyYAML)."""
    check_resources(plan)
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for svc in plan["services"]:
        for name, replica in _replica_names(svc):
            out: dict[str, Any] = {"image": img.tag}
            if svc["role"] == "gateway":
                out["build"] = {"context": build_context}
            else:
                # the Gateway's service holds the build: started after it, a service finds the image built
                out["depends_on"] = ["gateway"]
            out["command"] = launcher.run(svc["name"], replica)
            out["restart"] = "no" if svc.get("restart") == "never" else "on-failure"
            out["volumes"] = [{"type": "bind", "source": flow_file, "target": FLOW_PATH, "read_only": True}]
            if svc["stateful"]:
                # one volume per shard: the replicas of an _index shard share its store
                volume = f"{svc['name']}-data"
                volumes[volume] = {"labels": {"jinad.flow": plan["name"], "jinad.service": svc["name"]}}
                out["volumes"].append({"type": "volume", "source": volume, "target": DATA_DIR})
            if svc["env"]:
                out["environment"] = {str(k): str(v) for k, v in svc["env"].items()}
            if svc["publish"]:
                out["ports"] = [f"{publish_host}:{p}:{p}" for p in svc["publish"]]
            out["healthcheck"] = {"test": ["CMD", *launcher.probe(svc["ctrl_port"])], "interval": "10s", "timeout": "5s",
                                  "retries": 3, "start_period": f"{int(svc['timeout_ready'])}s"}
            deploy = _compose_deploy(svc)
            if deploy:
                out["deploy"] = deploy
            out["labels"] = {"jinad.flow": plan["name"], "jinad.role": svc["role"], "jinad.service": svc["name"]}
            services[name] = out
    doc: dict[str, Any] = {"services": services}
    if volumes:
        doc["volumes"] = volumes
    return doc


def _compose_deploy(svc: dict[str, Any]) -> dict[str, Any]:
    reservations: dict[str, Any] = {}
    res = svc.get("resources") or {}
    # compose outside swarm reserves memory and devices only (it ignores a `cpus` reservation, and a
    # CPU limit is another promise than a request): cpu is for Kubernetes
    if "memory" in res:
        reservations["memory"] = str(_memory(res["memory"]))
    asked = _gpus.parse(svc.get("gpus"))
    if asked is not None:
        device: dict[str, Any] = {"driver": "nvidia", "capabilities": ["gpu"]}
        if asked == "all":
            device["count"] = "all"
        elif isinstance(asked, int):
            device["count"] = asked
        else:
            device["device_ids"] = list(asked)
        reservations["devices"] = [device]
    return {"resources": {"reservations": reservations}} if reservations else {}


# ---- Kubernetes -----------------------------------------------------------------------------------


def kubernetes(plan: dict[str, Any], img: Image, flow_text: str, launcher: Launcher, *, namespace: str | None = None) -> list[dict]:
    """Every Kubernetes object of a plan, in the order they are applied."""
    check_resources(plan)
    flow = _label(plan["name"])
    config_map = f"{flow}-flow"
    objects: list[dict[str, Any]] = []
    if namespace:
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(config_map, flow, namespace),
                    "data": {"flow.yml": flow_text}})
    for svc in plan["services"]:
        labels = _labels(flow, svc)
        ports = dict(svc["ports"])
        if svc["role"] in ("gateway", "pea", "head"):
            service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(svc["name"], flow, namespace, svc),
                       "spec": {"selector": labels,
                                "ports": [{"name": _port_name(k), "port": p, "targetPort": p, "protocol": "TCP"}
                                          for k, p in ports.items()]}}
            objects.append(service)
        elif svc["stateful"]:
            # a StatefulSet names its Peas through a headless Service (nothing connects to them)
            objects.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": _meta(svc["name"], flow, namespace, svc),
                            "spec": {"clusterIP": "None", "selector": labels}})
        pod_spec = _pod_spec(svc, img, config_map, ports, launcher)
        template = {"metadata": {"labels": labels}, "spec": pod_spec}
        spec: dict[str, Any] = {"replicas": svc["replicas"], "selector": {"matchLabels": labels},
                                "template": template}
        if svc["stateful"]:
            spec["serviceName"] = svc["name"]
            spec["podManagementPolicy"] = "Parallel"
            spec["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            kind = "StatefulSet"
        else:
            kind = "Deployment"
        objects.append({"apiVersion": "apps/v1", "kind": kind, "metadata": _meta(svc["name"], flow, namespace, svc),
                        "spec": spec})
    return objects


def _meta(name: str, flow: str, namespace: str | None, svc: dict | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": flow,
                                                     "app.kubernetes.io/managed-by": MANAGED_BY}}
    if svc is not None:
        meta["labels"]["app.kubernetes.io/component"] = svc["role"]
    if namespace:
        meta["namespace"] = namespace
    return meta


def _labels(flow: str, svc: dict[str, Any]) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": flow, "app.kubernetes.io/name": svc["name"]}


def _port_name(key: str) -> str:
    # a port name is at most 15 characters: in, http, native, results, s0..s63
    return key.replace("shard-", "s")


def _pod_spec(svc: dict[str, Any], img: Image, config_map: str, ports: dict[str, int],
              launcher: Launcher) -> dict[str, Any]:
    exec_probe = {"exec": {"command": launcher.probe(svc["ctrl_port"])}}
    ready = dict(exec_probe)
    if svc["role"] == "gateway":
        ready = {"httpGet": {"path": "/alive", "port": ports["http"]}}
    container: dict[str, Any] = {
        "name": "pea" if svc["kind"] == "pea" else "gateway",
        "image": img.tag,
        "imagePullPolicy": "IfNotPresent",
        "command": launcher.run(svc["name"], None),
        "ports": [{"name": _port_name(k), "containerPort": p} for k, p in ports.items()],
        "readinessProbe": {**ready, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**exec_probe, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
        "startupProbe": {**exec_probe, "periodSeconds": 5, "timeoutSeconds": 5,
                         "failureThreshold": max(1, int(svc["timeout_ready"] // 5) + 1)},
        "volumeMounts": [{"name": "flow", "mountPath": FLOW_DIR, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if svc["env"]:
        container["env"] = [{"name": str(k), "value": str(v)} for k, v in svc["env"].items()]
    resources: dict[str, Any] = {}
    if svc.get("resources"):
        resources["requests"] = {k: str(v) for k, v in svc["resources"].items()}
    asked = _gpus.parse(svc.get("gpus"))
    if isinstance(asked, int):
        resources["limits"] = {"nvidia.com/gpu": asked}
    if resources:
        container["resources"] = resources
    if svc["stateful"]:
        container["volumeMounts"].append({"name": "data", "mountPath": DATA_DIR})
    return {"containers": [container],
            "securityContext": {"runAsNonRoot": True, "runAsUser": templating.CONTAINER_UID,
                                "runAsGroup": templating.CONTAINER_UID, "fsGroup": templating.CONTAINER_UID},
            "volumes": [{"name": "flow", "configMap": {"name": config_map}}]}


def kubernetes_files(objects: list[dict[str, Any]], namespace: str | None = None) -> dict[str, str]:
    """File name -> YAML text: one object per file, and the kustomization naming them in order."""
    files: dict[str, str] = {}
    for i, obj in enumerate(objects):
        files[f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"] = safe_yaml.dumps(obj)
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        kustomization["namespace"] = namespace
    kustomization["resources"] = list(files)
    files["kustomization.yaml"] = safe_yaml.dumps(kustomization)
    return files


# ---- what an export is -----------------------------------------------------------------------------


def summary(engine: str, plan: dict[str, Any], doc: Any) -> list[dict[str, Any]]:
    """The objects of an export, one line each (what `render --json` lists)."""
    roles = {s["name"]: s for s in plan["services"]}
    out = []
    if engine == "compose":
        for name, svc in doc["services"].items():
            src = roles[svc["labels"]["jinad.service"]]
            out.append({"kind": "service", "name": name, "role": src["role"], "pod": src["pod"],
                        "command": svc["command"], "connects_to": src["connects_to"]})
        for name in doc.get("volumes") or {}:
            out.append({"kind": "volume", "name": name})
        return out
    for obj in doc:
        item = {"kind": obj["kind"], "name": obj["metadata"]["name"]}
        component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if component:
            item["role"] = component
        if obj["kind"] in ("Deployment", "StatefulSet"):
            item["replicas"] = obj["spec"]["replicas"]
            item["connects_to"] = roles[obj["metadata"]["name"]]["connects_to"]
        out.append(item)
    return out


def write(out_dir: pathlib.Path, files: dict[str, str]) -> list[pathlib.Path]:
    """Write text files under ``out_dir`` (made if needed); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rel, text in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


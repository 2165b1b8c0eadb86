"""Flow <-> YAML: ``!Flow`` / ``version: 1`` / ``with:`` / ``pods:`` (list or mapping; ``executors:`` too)."""

from __future__ import annotations

import os
from typing import Any

from .. import safe_yaml
from ..errors import BadConfig
from .builder import GATEWAY, SECRET_KEYS, Flow, order_by_needs
from .spec import FlowSpec, PodSpec, did_you_mean, refuse_unknown

_TOP_KEYS = ("version", "with", "pods", "executors", "jtype")


def load_flow(source: str, *, fork: bool = False) -> Flow:
    base_dir = os.getcwd()
    if "\n" not in source and source.endswith((".yml", ".yaml")):
        if not os.path.isfile(source):
            raise BadConfig(f"Flow file {source!r} does not exist")
        base_dir = os.path.dirname(os.path.abspath(source))
        what = f"Flow file {source}"
        data = safe_yaml.load_file(source, what=what)
    else:
        what = "Flow YAML"
        data = safe_yaml.loads(source, name="<Flow YAML string>", what=what)
    return flow_from_dict(data, base_dir=base_dir, what=what, fork=fork)


def flow_from_dict(data: Any, *, base_dir: str | None = None, what: str = "Flow YAML", fork: bool = False) -> Flow:
    if not isinstance(data, dict):
        raise BadConfig(f"{what}: expected a mapping (`!Flow` with `pods:`), got {type(data).__name__}")
    kind = data.pop("__kind__", None)
    jtype = data.pop("jtype", None)
    if kind is None and jtype not in (None, "Flow"):
        raise BadConfig(f"{what}: jtype is {jtype!r}, expected Flow")
    version = str(data.pop("version", "1"))
    if version not in ("1", "1.0"):
        raise BadConfig(f"{what}: unsupported version {version!r} (this release reads version 1)")
    flow_args = data.pop("with", None) or {}
    pods = data.pop("pods", None)
    if pods is None:
        pods = data.pop("executors", None)
    if data:
        hints = [f"{k!r}" + (f" (did you mean {g!r}?)" if (g := did_you_mean(str(k), _TOP_KEYS)) else "")
                 for k in data]
        raise BadConfig(f"{what}: unknown top-level key(s) {', '.join(hints)} (known: version, with, pods)")
    if not isinstance(flow_args, dict):
        raise BadConfig(f"{what}: `with:` must be a mapping")
    if pods is None or not pods:
        raise BadConfig(f"{what}: no `pods:`")
    if isinstance(pods, dict):  # the old mapping form: {name: {...}}
        pods = [{"name": k, **(v or {})} for k, v in pods.items()]
    if not isinstance(pods, list):
        raise BadConfig(f"{what}: `pods:` must be a list")
    refuse_unknown(FlowSpec, flow_args, f"{what}: with")
    try:
        f = Flow(fork=fork, **flow_args)
    except BadConfig as exc:
        raise BadConfig(f"{what}: {exc}") from exc
    if base_dir:
        f.base_dir = base_dir
    specs = []
    for i, pod in enumerate(pods):
        if not isinstance(pod, dict):
            raise BadConfig(f"{what}: pods[{i}] must be a mapping")
        refuse_unknown(PodSpec, pod, f"{what}: pods[{i}] ({pod.get('name') or 'unnamed'})", extra=("method",))
        pod = dict(pod)
        method = pod.pop("method", "add")
        if method not in ("add", "needs"):
            raise BadConfig(f"{what}: pods[{i}] method must be 'add' or 'needs', got {method!r}")
        pod.setdefault("name", f"pod{i}")
        specs.append(pod)
    # Pods may name Pods defined later in the file: add them in dependency order.
    names = [p["name"] for p in specs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise BadConfig(f"{what}: duplicate Pod name(s) {dup}")
    prev = GATEWAY
    for p in specs:
        if p.get("needs") is None:
            p["needs"] = [prev]
        elif isinstance(p["needs"], str):
            p["needs"] = [p["needs"]]
        prev = p["name"]
    by_name = {p["name"]: p for p in specs}
    order = order_by_needs({n: by_name[n]["needs"] for n in names}, what)
    for name in order:
        try:
            f = f.add(**by_name[name])
        except BadConfig as exc:
            raise BadConfig(f"{what}: {exc}") from exc
    return f


def flow_to_dict(flow: Flow) -> dict[str, Any]:
    defaults = {k: info.default for k, info in FlowSpec.model_fields.items()}
    with_args = {k: v for k, v in flow.args.items() if k not in SECRET_KEYS and v != defaults.get(k)}
    pods = []
    for spec in flow.pods.values():
        out: dict[str, Any] = {"name": spec["name"], "uses": spec["uses"], "needs": list(spec["needs"])}
        for k, v in spec.items():
            if k in out or v is None or k in SECRET_KEYS:
                continue
            if k in ("parallel", "shards") and v == 1:
                continue
            out[k] = v
        pods.append(out)
    data: dict[str, Any] = {"version": "1"}
    if with_args:
        data["with"] = with_args
    data["pods"] = pods
    return data


def dump_flow(flow: Flow) -> str:
    return safe_yaml.dumps(safe_yaml.Tagged("!Flow", flow_to_dict(flow)))


def save_flow(flow: Flow, path: str) -> None:
    text = dump_flow(flow)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)

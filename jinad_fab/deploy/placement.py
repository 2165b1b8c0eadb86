"""Place a Flow's Pods on inventory hosts.

A Pod in Flow YAML may say where it wants to run:

- ``hosts: gpu`` - any host matching an inventory pattern (a group, ``gpu:cpu``, ``all:!gpu-2``);
- ``host: gpu-1`` - exactly that inventory host (an address such as ``10.0.0.5:8000`` that is
  not an inventory name passes through untouched);
- neither - the Pod stays local to the Flow, as before.

Placement is deterministic. Pods are placed in file order; a Pod asking for a group goes to the
candidate with the fewest Peas placed so far (ties: inventory order), so replicas of the Flow's
Pods spread over the group. A Pod's Peas (``parallel`` x ``shards``) stay on one host, next to
their head and tail. A Pod with ``gpus: N`` needs N GPUs per Pea, taken from the host's
``jinad_gpus``; hosts without enough free GPUs are skipped, and the Pod gets
``CUDA_VISIBLE_DEVICES`` naming the devices it was given.

The Gateway is placed last, like a Pod of one Pea: ``gateway: {hosts: cpu}`` (or ``host:``) at
the top of the Flow YAML, or ``flow up --gateway-host``; with neither it goes to the least
loaded host of the inventory. Its daemon runs the Flow and keeps the deployment's record.

A Pod placed by group that keeps no data (anything but ``_index``) gets ``fallback_hosts``: the
other hosts of its group, least loaded first. When its host stops answering for the Flow's
``lost_after`` seconds, the Flow starts it on the first of them that takes it and wires it in.
An ``_index`` Pod's data lives on its host: it is reported LOST, never moved.

The concrete Flow YAML then says ``host: <address>:<jinad_port>`` for each placed Pod, the
form ``Flow.add(host=...)`` takes for remote Pods, with the placement-only keys removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BadConfig, BadInput
from ..spec import PodSpec, names
from .inventory import Host, Inventory


class PlacementError(BadConfig):
    """No host can take a Pod; ``pod`` names it and ``reason`` says why."""

    def __init__(self, pod: str, reason: str):
        self.pod = pod
        self.reason = reason
        super().__init__(f"cannot place Pod {pod!r}: {reason}")


@dataclasses.dataclass(frozen=True)
class Assignment:
    """Where one Pod runs. ``host`` is None for a local Pod; ``target`` is what ``host:`` becomes."""

    pod: str
    host: str | None
    target: str | None
    peas: int
    gpu_ids: tuple[int, ...] = ()
    asked: str | None = None
    fallbacks: tuple[str, ...] = ()
    """Other hosts of the group that may take the Pod when its host is lost (stateless Pods only)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "pod": self.pod,
            "host": self.host,
            "target": self.target,
            "peas": self.peas,
            "gpu_ids": list(self.gpu_ids),
            "asked": self.asked,
            "fallbacks": list(self.fallbacks),
        }


@dataclasses.dataclass(frozen=True)
class Placement:
    assignments: tuple[Assignment, ...]
    gateway: Assignment | None = None
    """Where the Gateway runs (`flow up`): placed like a Pod of one Pea, after the Pods."""

    def __iter__(self):
        return iter(self.assignments)

    def __getitem__(self, pod: str) -> Assignment:
        for a in self.assignments:
            if a.pod == pod:
                return a
        raise KeyError(pod)

    @property
    def hosts(self) -> list[str]:
        """Inventory hosts that run at least one Pod, in placement order."""
        seen: list[str] = []
        for a in self.assignments:
            if a.host and a.host not in seen:
                seen.append(a.host)
        return seen


def pod_specs(flow: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Pods of a parsed Flow YAML mapping (``pods:`` or ``executors:``, list or mapping form)."""
    pods = flow.get("pods")
    if pods is None:
        pods = flow.get("executors")
    if not pods:
        raise BadConfig("Flow YAML has no `pods:`")
    if isinstance(pods, Mapping):
        pods = [{"name": k, **(v or {})} for k, v in pods.items()]
    if not isinstance(pods, list) or not all(isinstance(p, Mapping) for p in pods):
        raise BadConfig("Flow YAML: `pods:` must be a list of mappings")
    return [{"name": p.get("name", f"pod{i}"), **p} for i, p in enumerate(pods)]


_OPTION_OF = names(PodSpec)


def _count(pod: Mapping[str, Any], key: str) -> int:
    # any name the spec accepts for the option (`replicas` is `parallel`)
    value = next((v for k, v in pod.items() if _OPTION_OF.get(k) == key), 1) or 1
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise BadConfig(f"Pod {pod['name']!r}: {key} must be a whole number, not {value!r}") from exc
    if n < 1:
        raise BadConfig(f"Pod {pod['name']!r}: {key} must be at least 1")
    return n


def _gpus(pod: Mapping[str, Any]) -> int:
    value = pod.get("gpus", 0) or 0
    if isinstance(value, str) and value.strip().lower() == "all":
        raise BadConfig(f"Pod {pod['name']!r}: gpus: all cannot be placed; give a number per Pea")
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise BadConfig(f"Pod {pod['name']!r}: gpus must be a number, not {value!r}") from exc
    if n < 0:
        raise BadConfig(f"Pod {pod['name']!r}: gpus must not be negative")
    return n


def _keeps_data(pod: Mapping[str, Any]) -> bool:
    """A Pod whose data lives on its host (an `_index`): never re-placed elsewhere when it is lost."""
    return str(pod.get("uses") or "").strip() == "_index"


def _target(host: Host) -> str:
    """What ``host:`` says for a Pod placed on ``host``: ``address:port``, the URL for an HTTPS daemon."""
    address = host.daemon_address
    return address.url if address.scheme == "https" else address.netloc


def place(pods: Sequence[Mapping[str, Any]], inventory: Inventory,
          gateway: Mapping[str, Any] | None = None) -> Placement:
    """Decide a host for every Pod (see the module docstring for the rules), then for the Gateway
    when ``gateway`` says where it may run (``{"hosts": "cpu"}`` or ``{"host": "cpu-1"}``)."""
    load: dict[str, int] = {name: 0 for name in inventory.hosts}
    gpus_used: dict[str, int] = {name: 0 for name in inventory.hosts}
    order = {name: i for i, name in enumerate(inventory.hosts)}
    out: list[Assignment] = []

    def take(pod: Mapping[str, Any], host: Host, peas: int, need: int, asked: str) -> Assignment:
        start = gpus_used[host.name]
        gpus_used[host.name] += need
        load[host.name] += peas
        return Assignment(
            pod=pod["name"], host=host.name, target=_target(host), peas=peas,
            gpu_ids=tuple(range(start, start + need)), asked=asked,
        )

    for pod in pods:
        name = pod["name"]
        peas = _count(pod, "parallel") * _count(pod, "shards")
        need = _gpus(pod) * peas
        host_key, hosts_key = pod.get("host"), pod.get("hosts")
        if host_key and hosts_key:
            raise PlacementError(name, "give either `host:` or `hosts:`, not both")
        if host_key:
            host_key = str(host_key)
            if host_key not in inventory.hosts:
                # not an inventory name: an explicit address the Flow reaches by itself
                out.append(Assignment(pod=name, host=None, target=host_key, peas=peas, asked=host_key))
                continue
            host = inventory.hosts[host_key]
            free = host.gpus - gpus_used[host.name]
            if need > free:
                raise PlacementError(name, f"it needs {need} GPU(s) and host {host.name} has {free} free")
            out.append(take(pod, host, peas, need, host_key))
        elif hosts_key:
            pattern = ",".join(hosts_key) if isinstance(hosts_key, list) else str(hosts_key)
            try:
                candidates = inventory.select(pattern)
            except BadInput as exc:
                raise PlacementError(name, str(exc)) from exc
            if not candidates:
                raise PlacementError(name, f"no host matches {pattern!r}")
            fitting = [h for h in candidates if h.gpus - gpus_used[h.name] >= need]
            if not fitting:
                free = ", ".join(f"{h.name}={h.gpus - gpus_used[h.name]}" for h in candidates)
                raise PlacementError(name, f"it needs {need} GPU(s) on one host; free GPUs in {pattern!r}: {free}")
            best = min(fitting, key=lambda h: (load[h.name], order[h.name]))
            a = take(pod, best, peas, need, pattern)
            if not _keeps_data(pod):  # the rest of the group, least loaded first
                rest = sorted((h for h in fitting if h.name != best.name), key=lambda h: (load[h.name], order[h.name]))
                a = dataclasses.replace(a, fallbacks=tuple(h.name for h in rest))
            out.append(a)
        else:
            out.append(Assignment(pod=name, host=None, target=None, peas=peas))
    gw = None
    if gateway is not None:
        spec = {"name": "gateway", **{k: v for k, v in gateway.items() if k in ("host", "hosts")}}
        if not (spec.get("host") or spec.get("hosts")):
            spec["hosts"] = "all"
        if spec.get("host") and str(spec["host"]) not in inventory.hosts:
            raise PlacementError("gateway", f"{spec['host']!r} is not a host of the inventory")
        inner = place([*pods, spec], inventory)  # the Pods' load counts
        gw = inner["gateway"]
    return Placement(tuple(out), gw)


def apply(flow: Mapping[str, Any], placement: Placement, inventory: Inventory | None = None) -> dict[str, Any]:
    """The concrete Flow mapping: placed Pods get ``host: address:port``, ``hosts:`` is dropped.

    With a placed Gateway, the Pods placed on its host run in the Flow's own process there (no
    ``host:``): the daemon running the Flow is theirs too, and live changes reach them directly."""
    local_host = placement.gateway.host if placement.gateway else None
    concrete = {k: v for k, v in flow.items() if k not in ("pods", "executors", "gateway")}
    pods = []
    for spec in pod_specs(flow):
        spec = {k: v for k, v in spec.items() if k != "hosts"}
        a = placement[spec["name"]]
        if a.target and not (local_host and a.host == local_host):
            spec["host"] = a.target
            if a.fallbacks and inventory is not None and local_host:  # `flow up`: the Flow re-places it
                spec["fallback_hosts"] = [_target(inventory.hosts[h]) for h in a.fallbacks]
        else:
            spec.pop("host", None)
        if a.gpu_ids:
            env = dict(spec.get("env") or {})
            env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in a.gpu_ids))
            spec["env"] = env
        pods.append(spec)
    concrete["pods"] = pods
    return concrete

"""Place a Flow's Pods on inventory hosts.

A Pod in Flow YAML may say where it wants to run:

- ``hosts: gpu`` - any hosts matching an Ansible host pattern (a group, ``gpu:cpu``, ``all:!gpu-2``,
  ``gpu[0:1]``, ``~gpu-.*``), resolved by ansible-core's own inventory manager as ``-l`` is;
- ``host: gpu-1`` - exactly that inventory host (an address such as ``10.0.0.5:8000`` that is
  not an inventory name passes through untouched);
- neither - the Pod stays local to the Flow, as before.

Placement is deterministic. Pods are placed in file order. A Pod asking for hosts by pattern is
placed one *unit* at a time, each unit on its own best host, so its replicas and shards spread
over the hosts the pattern matches:

- a unit is one Pea (one replica of one shard), except for a Pod that keeps data (``_index``): there
  a unit is one shard with all its replicas, which share that shard's store on its host;
- the best host for a unit needing GPUs has the most free GPUs; then (for every unit) the fewest
  Peas placed so far, of this Flow's Pods; then inventory order. A host without the unit's GPUs
  free is never chosen: GPUs are never over-subscribed (``gpus: N`` is per Pea, taken from the
  host's ``jinad_gpus``; each Pea gets the device ids it was given).

A Pod whose units all land on one host runs there as one remote Pod (``host:``), as before; one
whose units land on several hosts is *spread*: the concrete Flow gives it ``spread:`` (its parts,
each a host with some replicas of one shard, and the hosts of its group with the GPUs left free
there, where a live scale adds replicas by the same rule), and ``host:`` names its first part's
daemon. To the user it stays one Pod (see :mod:`jinad_fab.flow.spread`).

The Gateway is placed last, like a Pod of one Pea: ``gateway: {hosts: cpu}`` (or ``host:``) at
the top of the Flow YAML, or ``flow up --gateway-host``; with neither it goes to the least
loaded host of the inventory. Its daemon runs the Flow and keeps the deployment's record.

A Pod placed by group on one host that keeps no data (anything but ``_index``) gets
``fallback_hosts``: the other hosts of its group, least loaded first. When its host stops
answering for the Flow's ``lost_after`` seconds, the Flow starts it on the first of them that
takes it and wires it in. An ``_index`` Pod's data lives on its host: it is reported LOST, never
moved. (A spread Pod re-places the replicas of a lost host itself, on the rest of its group.)

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
class Part:
    """Some Peas of a Pod on one host: ``replicas`` replicas of shard ``shard`` (None: the Pod has
    one shard), with the GPU ids they were given there."""

    host: str
    target: str
    replicas: int
    shard: int | None = None
    gpu_ids: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "target": self.target, "replicas": self.replicas, "shard": self.shard,
                "gpu_ids": list(self.gpu_ids)}


@dataclasses.dataclass(frozen=True)
class Assignment:
    """Where one Pod runs. ``host`` is None for a local Pod; ``target`` is what ``host:`` becomes.
    A spread Pod (its Peas on several hosts) has its ``parts``; ``host`` is then its first part's."""

    pod: str
    host: str | None
    target: str | None
    peas: int
    gpu_ids: tuple[int, ...] = ()
    asked: str | None = None
    fallbacks: tuple[str, ...] = ()
    """Other hosts of the group that may take the Pod when its host is lost (stateless Pods only)."""
    parts: tuple[Part, ...] = ()
    """A spread Pod's parts, one per host and shard (empty: the Pod runs on ``host`` as a whole)."""
    group: tuple[str, ...] = ()
    """A spread Pod's candidate hosts (its pattern's), where live scaling and re-placing may go (for
    an ``_index``, only to the host each shard is on)."""

    @property
    def spread(self) -> bool:
        return bool(self.parts)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts the Pod's Peas run on (one, or a spread Pod's several)."""
        if self.parts:
            return tuple(dict.fromkeys(p.host for p in self.parts))
        return (self.host,) if self.host else ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "pod": self.pod,
            "host": self.host,
            "hosts": list(self.hosts),
            "target": self.target,
            "peas": self.peas,
            "gpu_ids": list(self.gpu_ids),
            "asked": self.asked,
            "fallbacks": list(self.fallbacks),
            "parts": [p.as_dict() for p in self.parts],
            "group": list(self.group),
        }


@dataclasses.dataclass(frozen=True)
class Placement:
    assignments: tuple[Assignment, ...]
    gateway: Assignment | None = None
    """Where the Gateway runs (`flow up`): placed like a Pod of one Pea, after the Pods."""
    free_gpus: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict, compare=False)
    """The GPU ids left free on each inventory host once every Pod is placed."""

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
            seen.extend(h for h in a.hosts if h not in seen)
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

    def best(units_need: int, candidates: list[Host]) -> Host | None:
        """The host for one unit: most free GPUs (when it needs some), fewest Peas, inventory order."""
        fitting = [h for h in candidates if h.gpus - gpus_used[h.name] >= units_need]
        if not fitting:
            return None
        return min(fitting, key=lambda h: (-(h.gpus - gpus_used[h.name]) if units_need else 0,
                                           load[h.name], order[h.name]))

    def spread(pod: Mapping[str, Any], candidates: list[Host], pattern: str) -> Assignment:
        """Place a Pod unit by unit over ``candidates`` (see the module docstring)."""
        name, replicas, shards, per_pea = pod["name"], _count(pod, "parallel"), _count(pod, "shards"), _gpus(pod)
        keeps = _keeps_data(pod)
        units = [(s, replicas) for s in range(shards)] if keeps else \
            [(s, 1) for s in range(shards) for _ in range(replicas)]
        placed: dict[tuple[str, int], list] = {}  # (host, shard) -> [replicas, gpu ids], in placing order
        for shard, n in units:
            need = per_pea * n
            host = best(need, candidates)
            if host is None:
                free = ", ".join(f"{h.name}={h.gpus - gpus_used[h.name]}" for h in candidates)
                what = f"{need} GPU(s) per shard (its {n} replicas share the shard's host)" if keeps and n > 1 \
                    else f"{need} GPU(s) per Pea"
                raise PlacementError(name, f"it needs {what} and no host has them free; free GPUs in "
                                           f"{pattern!r}: {free}")
            start = gpus_used[host.name]
            gpus_used[host.name] += need
            load[host.name] += n
            entry = placed.setdefault((host.name, shard), [0, []])
            entry[0] += n
            entry[1].extend(range(start, start + need))
        hosts = list(dict.fromkeys(h for h, _ in placed))
        first = inventory.hosts[hosts[0]]
        peas = replicas * shards
        if len(hosts) == 1:  # all on one host: one remote Pod there, as before
            ids = tuple(i for _, gids in placed.values() for i in gids)
            a = Assignment(pod=name, host=first.name, target=_target(first), peas=peas, gpu_ids=ids, asked=pattern)
            if not keeps:  # the rest of the group, least loaded first
                rest = sorted((h for h in candidates if h.name != first.name and h.gpus - gpus_used[h.name] >= per_pea * peas),
                              key=lambda h: (load[h.name], order[h.name]))
                a = dataclasses.replace(a, fallbacks=tuple(h.name for h in rest))
            return a
        parts = tuple(Part(host=h, target=_target(inventory.hosts[h]), replicas=n,
                           shard=s if shards > 1 else None, gpu_ids=tuple(gids))
                      for (h, s), (n, gids) in sorted(placed.items(), key=lambda kv: kv[0][1]))
        return Assignment(pod=name, host=first.name, target=_target(first), peas=peas, asked=pattern,
                          parts=parts, group=tuple(h.name for h in candidates))

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
            out.append(spread(pod, candidates, pattern))
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
    free = {name: tuple(range(used, inventory.hosts[name].gpus)) for name, used in gpus_used.items()}
    return Placement(tuple(out), gw, free)


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
        if a.spread:  # its parts run through their daemons (the Gateway's host's too)
            spec["host"] = a.target
            spec["spread"] = spread_spec(a, placement, inventory)
        elif a.target and not (local_host and a.host == local_host):
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


def spread_spec(a: Assignment, placement: Placement, inventory: Inventory | None) -> dict[str, Any]:
    """The ``spread:`` option of a spread Pod: its parts (daemon, replicas, shard, GPU ids) and its
    group's daemons with the GPU ids left free there (where a live scale or a lost host's replicas
    go, by the same rule; an ``_index`` grows only on each shard's own host)."""
    parts = []
    for p in a.parts:
        part: dict[str, Any] = {"host": p.target, "replicas": p.replicas}
        if p.shard is not None:
            part["shard"] = p.shard
        if p.gpu_ids:
            part["gpu_ids"] = list(p.gpu_ids)
        parts.append(part)
    out: dict[str, Any] = {"parts": parts}
    if a.group and inventory is not None:
        out["hosts"] = [{"host": _target(inventory.hosts[h]),
                         **({"free_gpu_ids": list(placement.free_gpus[h])} if placement.free_gpus.get(h) else {})}
                        for h in a.group]
    return out

"""Where the demo's Pods run when ``--inventory`` is given.

Encoders ask for the ``gpu`` group (falling back to ``cpu``, then to every host, saying so), the
``_index`` shards for ``cpu`` (falling back to every host). The decision is made by
:func:`jinad_fab.deploy.placement.place`, the code ``flow up`` uses. A host reached with
``ansible_connection: local`` (``inventories/local``) is this machine: its Pods run right here.
Every other placed host gets its daemon probed first, then its Pods become ``Flow.add(host=...)``
arguments, which is the remote-Pods path of the Flow. A Pod whose replicas or shards placement
spread over several hosts of its group gets ``spread=`` too, as in the Flow `flow up` runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..deploy.inventory import Host, Inventory
from ..deploy.placement import Placement, place, spread_spec
from ..errors import BadConfig

LOCAL = "localhost"


@dataclasses.dataclass(frozen=True)
class PodPlan:
    """The demo's Pods as placement sees them: name, preferred groups (first non-empty wins), Peas."""

    name: str
    groups: tuple[str, ...]
    parallel: int = 1
    shards: int = 1


@dataclasses.dataclass(frozen=True)
class HelloPlacement:
    placement: Placement
    inventory: Inventory
    notes: tuple[str, ...]

    def host_of(self, pod: str) -> str:
        return self.placement[pod].host or LOCAL

    def hosts_of(self, pod: str) -> list[str]:
        """Every host the Pod's Peas run on (a spread Pod's several)."""
        return list(self.placement[pod].hosts) or [LOCAL]

    def is_local(self, pod: str) -> bool:
        a = self.placement[pod]
        if a.spread:  # its replicas and shards are started through each host's daemon, this one's too
            return False
        return a.host is None or _is_this_machine(self.inventory.hosts[a.host])

    @property
    def remote_hosts(self) -> list[Host]:
        names = [h for a in self.placement if a.host and not self.is_local(a.pod) for h in (*a.hosts, *a.group)]
        return [self.inventory.hosts[n] for n in dict.fromkeys(names)]

    def as_dict(self) -> dict[str, Any]:
        return {a.pod: {"host": a.host or LOCAL, "hosts": self.hosts_of(a.pod), "target": a.target,
                        "local": self.is_local(a.pod), "asked": a.asked, "peas": a.peas} for a in self.placement}


def _is_this_machine(host: Host) -> bool:
    return host.connection == "local"


def plan(inventory: Inventory, pods: Sequence[PodPlan]) -> HelloPlacement:
    """Place every Pod on the first of its groups that has hosts; note each fallback taken."""
    specs, notes = [], []
    for pod in pods:
        chosen = next((g for g in pod.groups if inventory.groups.get(g)), None)
        if chosen is None:
            chosen = "all"
        if chosen != pod.groups[0]:
            notes.append(f"the inventory's {pod.groups[0]!r} group is empty, so Pod {pod.name!r} goes to "
                         f"{'any host' if chosen == 'all' else repr(chosen) + ' hosts'}")
        specs.append({"name": pod.name, "hosts": chosen, "parallel": pod.parallel, "shards": pod.shards})
    return HelloPlacement(place(specs, inventory), inventory, tuple(notes))


def flow_add_args(hp: HelloPlacement, pod: str, upload_files: Sequence[str] = ()) -> Mapping[str, Any]:
    """Extra ``Flow.add`` arguments that put a Pod where it was placed: nothing for this machine,
    ``host=<address:port>`` plus the files its Executor needs for any other host, and that host's
    token and CA bundle from the inventory (in memory only)."""
    if hp.is_local(pod):
        return {}
    a = hp.placement[pod]
    args: dict[str, Any] = {"host": a.target}
    host = hp.inventory.hosts[a.host]
    token, ca_file = hp.inventory.token_for(host), hp.inventory.ca_file_for(host)
    if a.spread:  # its Peas over several hosts, as `flow up` runs it (see jinad_fab.flow.spread)
        args["spread"] = spread_spec(a, hp.placement, hp.inventory)
        token = shared_token(hp)
    if token:
        args["token"] = token
    if ca_file:
        args["ca_file"] = ca_file
    if upload_files:
        args["upload_files"] = list(upload_files)
    return args


def shared_token(hp: HelloPlacement) -> str | None:
    """The one token of the daemons the spread Pods may run on, which this process's Flow sends to
    each of them (``Flow(token=...)``); None when no Pod is spread. Daemons with different tokens
    are refused rather than sent another host's token."""
    names = sorted({h for a in hp.placement if a.spread for h in (*a.hosts, *a.group)})
    tokens = {hp.inventory.token_for(hp.inventory.hosts[n]) for n in names}
    if len(tokens) > 1:
        raise BadConfig(f"hello spreads a Pod over {', '.join(names)}, whose daemons have different tokens, and "
                        f"would not send one host's token to another: give them one jinad_token_file, or "
                        f"put the Pod's group on one host")
    return tokens.pop() if tokens else None


def probe(hp: HelloPlacement, timeout: float = 3.0) -> None:
    """Ask each remote host's daemon ``/alive``; HostsUnreachable/DeployError names every failed host."""
    hosts = hp.remote_hosts
    if not hosts:
        return
    from ..deploy.fleet import fan_out

    result = fan_out(hp.inventory, hosts, lambda c: c.alive(), timeout=timeout)
    result.raise_for_failures("hello: the daemons of the placed hosts did not answer")

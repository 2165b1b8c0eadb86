"""`jinad-fab provision rotate-token`: a new token for every daemon, with nothing restarted.

Hosts that share a controller token file (``credentials/jinad_token`` by default) share a token,
so they rotate together, in two steps that never leave a client refused:

1. every daemon of the group is told the new token (``PUT /token``, sent with the old one); it
   requires the new one from then on, writes it to its own token file, and still accepts the old;
2. when every one of them took it, each running Flow of the inventory that was handed the token
   of one of them (a fleet deployment's keeper starts and renews its Pods on the other daemons) is
   handed the new one (``PUT /flows/{id}/peers``), then the controller's file gets the new token
   and each daemon is told to forget the old one (``DELETE /token/previous``).

When a daemon of the group cannot take it, the ones that did are switched back to the old token
and the controller's file is left alone: the group keeps working with the old token, and the
result names the host that failed. Flows, Pods and Peas keep running throughout; the daemons
are not restarted.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import pathlib
import secrets
import string
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DaemonError, DaemonUnreachable
from ..remote import DaemonClient
from ..tokens import write_token_file
from .inventory import Host, Inventory
from .results import GroupResult

_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 40
"""Like the token the jinad role generates (ascii letters and digits, 40 characters)."""


def new_token() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(TOKEN_LENGTH))


@dataclasses.dataclass
class Rotation:
    """One host's outcome: ``rotated`` when it requires the new token and refuses the old."""

    host: str
    url: str
    token_file: str = ""
    rotated: bool = False
    error: str = ""
    unreachable: bool = False
    flows: list[str] = dataclasses.field(default_factory=list)
    """The running Flows (``host/flow id``) handed this daemon's new token."""

    @property
    def ok(self) -> bool:
        return self.rotated and not self.error

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "url": self.url, "token_file": self.token_file, "rotated": self.rotated,
                "ok": self.ok, "error": self.error, "unreachable": self.unreachable, "flows": list(self.flows)}


def rotate_tokens(inventory: Inventory, hosts: Sequence[Host], *, max_parallel: int = 16,
                  timeout: float = 10.0) -> GroupResult[Rotation]:
    """Rotate the token of ``hosts``' daemons, group by group (see the module docstring)."""
    out = {h.name: Rotation(h.name, h.daemon_url) for h in hosts}
    sharing: dict[pathlib.Path, list[str]] = {}
    for host in inventory.hosts.values():
        path = inventory.token_file_for(host)
        if path is not None:
            sharing.setdefault(path, []).append(host.name)
    groups: dict[pathlib.Path, list[Host]] = {}
    for host in hosts:
        path = inventory.token_file_for(host)
        if path is None:
            out[host.name].error = ("jinad_token is set in the inventory, which this command cannot change: "
                                    "put a new one there and run `jinad-fab provision deploy`")
            continue
        out[host.name].token_file = str(path)
        left_out = [n for n in sharing[path] if n not in out]
        if left_out:
            out[host.name].error = (f"not rotated: it shares {path} with {', '.join(left_out)}, which must rotate "
                                    f"with it (select them too, or give each host its own jinad_token_file)")
            continue
        groups.setdefault(path, []).append(host)
    for path, members in groups.items():
        _rotate_group(inventory, path, members, out, max_parallel, timeout)
    return GroupResult.of(out[h.name] for h in hosts)


def _rotate_group(inventory: Inventory, path: pathlib.Path, members: list[Host], out: dict[str, Rotation],
                  max_parallel: int, timeout: float) -> None:
    old = inventory.token_for(members[0])
    if not old:
        for h in members:
            out[h.name].error = f"no token in {path}: deploy the host first (`jinad-fab provision deploy`)"
        return
    new = new_token()

    def call(token: str, what: Callable[[DaemonClient], Any]) -> Callable[[Host], str | DaemonError | None]:
        def one(host: Host) -> DaemonError | None:
            try:
                with DaemonClient.from_address(host.daemon_address, token, ca_file=inventory.ca_file_for(host),
                                               timeout=timeout, name=host.name) as client:
                    what(client)
            except DaemonError as exc:
                return exc
            return None
        return one

    def each(fn, hosts: list[Host]) -> dict[str, DaemonError | None]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(hosts)))) as pool:
            return dict(zip([h.name for h in hosts], pool.map(fn, hosts)))

    told = each(call(old, lambda c: c.rotate_token(new)), members)
    took = [h for h in members if told[h.name] is None]
    if len(took) < len(members):
        failed = sorted(n for n, e in told.items() if e is not None)
        back = each(call(new, lambda c: c.rotate_token(old)), took)  # sent with the new: only it may rotate
        undone = [h for h in took if back[h.name] is None]
        each(call(old, lambda c: c.forget_previous_token()), undone)
        for h in members:
            r, err = out[h.name], told[h.name]
            if err is not None:
                r.error, r.unreachable = f"not rotated: {err}", isinstance(err, DaemonUnreachable)
            elif back[h.name] is not None:  # it requires the new token, which the controller does not keep
                r.error = (f"took the new token, and switching it back failed ({back[h.name]}); its token file "
                           f"holds the new one: run `jinad-fab provision deploy -l {h.name}` to restore the old")
            else:
                r.error = f"not rotated: kept the old token because {', '.join(failed)} (same token file) failed"
        return
    missed = _hand_to_flows(inventory, members, new, out, max_parallel, timeout)
    write_token_file(path, new)  # from here on every client of this inventory sends the new token
    forgot = each(call(new, lambda c: c.forget_previous_token()), members)
    for h in members:
        r = out[h.name]
        r.rotated = True
        if missed.get(h.name):
            r.error = "; ".join(missed[h.name])
        if forgot[h.name] is not None:
            r.error = (f"rotated, but it still accepts the old token until restarted: {forgot[h.name]}")
            r.unreachable = isinstance(forgot[h.name], DaemonUnreachable)


def _hand_to_flows(inventory: Inventory, members: list[Host], new: str, out: dict[str, Rotation],
                   max_parallel: int, timeout: float) -> dict[str, list[str]]:
    """Hand ``new`` to every running Flow of the inventory's daemons that was handed the token of
    one of ``members`` (while both tokens work); each member's Flows go to its ``flows``. Returns,
    per member, the Flows that could not be told (they will be refused once the old token goes)."""
    from .fleet import fan_out

    rotated = {h.daemon_address.netloc: h.name for h in members}

    def tell(client: DaemonClient) -> list[tuple[str, str, str]]:
        done = []
        for flow in client.flows():
            keys = [k for k in flow.get("peers") or [] if k in rotated]
            if flow.get("state") != "RUNNING" or not keys:
                continue
            try:
                client.hand_over_tokens(flow["id"], {k: new for k in keys})
                done.extend((rotated[k], flow["id"], "") for k in keys)
            except DaemonError as exc:
                done.extend((rotated[k], flow["id"], str(exc)) for k in keys)
        return done

    missed: dict[str, list[str]] = {}
    for host, answer in fan_out(inventory, list(inventory.hosts.values()), tell, max_parallel=max_parallel,
                                timeout=timeout).items():
        for member, flow_id, error in answer.value or []:
            if error:
                missed.setdefault(member, []).append(f"rotated, but flow {flow_id} on {host} was not handed the "
                                                     f"new token and cannot reach it any more: {error}")
            else:
                out[member].flows.append(f"{host}/{flow_id}")
    return missed

"""Ask every host's daemon the same question at once: ``/alive`` + ``/status`` for `hosts`,
``/flows`` for `flow ls`. One outcome per host, never stopping at the first failure."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DaemonError, DaemonUnreachable
from ..remote import DaemonClient
from .inventory import Host, Inventory
from .results import GroupResult


@dataclasses.dataclass
class DaemonAnswer:
    host: str
    url: str
    value: Any = None
    error: str = ""
    status_code: int | None = None
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "url": self.url, "ok": self.ok, "value": self.value, "error": self.error,
                "status_code": self.status_code, "unreachable": self.unreachable}


def client_for(inventory: Inventory, host: Host, timeout: float = 10.0) -> DaemonClient:
    # a source, not the token: read again after a refusal, when `provision rotate-token` rewrote the file
    return DaemonClient.from_address(host.daemon_address, lambda _address: inventory.token_for(host),
                                     ca_file=inventory.ca_file_for(host), timeout=timeout, name=host.name)


def fan_out(
    inventory: Inventory,
    hosts: Sequence[Host],
    ask: Callable[[DaemonClient], Any],
    *,
    max_parallel: int = 16,
    timeout: float = 10.0,
) -> GroupResult[DaemonAnswer]:
    """Call ``ask(client)`` for every host's daemon in parallel (bounded)."""

    def one(host: Host) -> DaemonAnswer:
        answer = DaemonAnswer(host=host.name, url=host.daemon_url)
        try:
            with client_for(inventory, host, timeout) as client:
                answer.value = ask(client)
        except DaemonUnreachable as exc:
            answer.error, answer.unreachable = str(exc), True
        except DaemonError as exc:
            answer.error, answer.status_code = str(exc), exc.status_code
        return answer

    if not hosts:
        return GroupResult()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(hosts)))) as pool:
        return GroupResult.of(pool.map(one, hosts))


def health(client: DaemonClient) -> dict[str, Any]:
    """``/alive`` and ``/status`` together: what `jinad-fab hosts` shows."""
    return {"alive": client.alive(), "status": client.status()}

"""Per-host outcomes: every fan-out (playbook, SSH command, daemon probe) returns a
:class:`GroupResult` holding one outcome per host, and never stops at the first failed host.

Exit codes follow from it (``exit_code``): 0 when every host succeeded, 4 when every failed
host was unreachable, 2 when some host failed otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from ..errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, DeployError, HostsUnreachable

OK, FAILED, UNREACHABLE = EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE  # the exit codes of jinad_fab.errors


class HostOutcome(Protocol):
    host: str

    @property
    def ok(self) -> bool: ...

    @property
    def unreachable(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=HostOutcome)


class GroupResult(dict[str, R]):
    """host name -> outcome, in the order the hosts were given."""

    @classmethod
    def of(cls, outcomes: Iterable[R]) -> GroupResult[R]:
        return cls((o.host, o) for o in outcomes)

    @property
    def succeeded(self) -> dict[str, R]:
        return {h: r for h, r in self.items() if r.ok}

    @property
    def failed(self) -> dict[str, R]:
        return {h: r for h, r in self.items() if not r.ok}

    @property
    def unreachable(self) -> dict[str, R]:
        return {h: r for h, r in self.items() if r.unreachable}

    @property
    def exit_code(self) -> int:
        failed = self.failed
        if not failed:
            return OK
        if all(r.unreachable for r in failed.values()):
            return UNREACHABLE
        return FAILED

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {h: r.as_dict() for h, r in self.items()}

    def raise_for_failures(self, what: str) -> None:
        """Raise DeployError (exit 2) or HostsUnreachable (exit 4) naming the hosts, if any failed."""
        code = self.exit_code
        if code == OK:
            return
        failed = self.failed
        names = ", ".join(sorted(failed))
        if code == UNREACHABLE:
            raise HostsUnreachable(f"{what}: unreachable: {names}", results=dict(self))
        unreachable = sorted(self.unreachable)
        detail = f" (unreachable: {', '.join(unreachable)})" if unreachable else ""
        raise DeployError(f"{what}: failed on {names}{detail}", results=dict(self))

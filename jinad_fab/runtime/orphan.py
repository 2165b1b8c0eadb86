"""Dying with the parent: a runtime process started by a Flow must never outlive it.

``arm(parent_pid)`` runs first thing in the process (before the heavy imports): it asks the
kernel for SIGTERM when the parent dies (``PR_SET_PDEATHSIG``) and, because that request only
covers deaths after it is made, compares the current parent with the pid the starter passed:
if they differ the parent is already gone and the process exits at once.
"""

from __future__ import annotations

import os
import signal

_parent: int | None = None


def arm(parent_pid: int | None) -> None:
    global _parent
    _parent = parent_pid or os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != _parent:
        os._exit(0)


def parent_gone() -> bool:
    """True once the process that started us has died (checked by the serving loops)."""
    return _parent is not None and os.getppid() != _parent

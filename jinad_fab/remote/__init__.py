"""The client side of `jinad`: reach a host's daemon and drive what it runs.

Two layers, one URL builder:

* :class:`DaemonClient` (raw): one method per REST route, bodies as plain dicts, and every
  failure translated once into the :class:`~jinad_fab.errors.DaemonError` family.
  ``DaemonClient.from_address("gpu1:8000" | "https://gpu1:8443", token, ca_file=...)`` is the
  only place a host becomes a URL (:class:`DaemonAddress`).
* :class:`Workspace`, :class:`FlowHandle`, :class:`PodHandle` (objects): ``state``,
  ``reload()``, ``wait_active()``, ``logs()``, ``delete()``.

:class:`WorkspaceFiles` and :func:`workspace_files` gather what an upload carries.

This package imports only ``schemas``, ``wire`` and ``errors`` (plus httpx): the client never
loads the server (an import-linter contract keeps it so).
"""

from .address import DEFAULT_PORT, DaemonAddress
from .client import DaemonClient, TokenSource, error_for_response
from .objects import FlowHandle, PodHandle, Workspace
from .uploads import WorkspaceFiles, workspace_files

__all__ = [
    "DEFAULT_PORT",
    "DaemonAddress",
    "DaemonClient",
    "FlowHandle",
    "PodHandle",
    "TokenSource",
    "Workspace",
    "WorkspaceFiles",
    "error_for_response",
    "workspace_files",
]

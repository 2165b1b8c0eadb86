"""What a workspace upload carries: local files keyed by their path inside the workspace.

:class:`WorkspaceFiles` collects files one by one (what a Flow's Pods name, relative to the
Flow's directory); :func:`workspace_files` takes a whole directory. Either gives the mapping
:meth:`~jinad_fab.remote.Workspace.create` uploads (``POST /workspaces``, one multipart part per
file, its filename the path relative to the workspace root).
"""

from __future__ import annotations

import os
import pathlib

from ..errors import BadConfig

PLACEHOLDER = (".jinad", b"[jinad]\n")
"""A workspace always gets at least one file, so the daemon has something to build from."""


class WorkspaceFiles:
    """The files a workspace upload carries, keyed by their path relative to ``base_dir``."""

    def __init__(self, base_dir: str | os.PathLike[str]):
        self.base_dir = os.fspath(base_dir)
        self.files: dict[str, str] = {}  # workspace path -> local path

    def __len__(self) -> int:
        return len(self.files)

    def add(self, path: str | os.PathLike[str], what: str) -> str:
        """Register a local file for upload; returns its path inside the workspace.

        A file outside ``base_dir`` goes to the workspace's top; two different files that would
        land on the same path are refused (``what`` names who asked for the file in that message).
        """
        path = os.fspath(path)
        local = os.path.normpath(path if os.path.isabs(path) else os.path.join(self.base_dir, path))
        if not os.path.isfile(local):
            raise BadConfig(f"{what}: {path!r} is not a file (looked at {local!r})")
        rel = os.path.relpath(local, self.base_dir)
        if rel.startswith(".."):
            rel = os.path.basename(local)  # outside the base directory: uploaded at the top
        rel = rel.replace(os.sep, "/")
        other = self.files.get(rel)
        if other is not None and other != local:
            raise BadConfig(f"{what}: two different files would both be uploaded as {rel!r}")
        self.files[rel] = local
        return rel

    def payload(self) -> dict[str, bytes]:
        """Workspace path -> content, read now (with the placeholder ``.jinad`` when none was added)."""
        out = {}
        for rel, local in sorted(self.files.items()):
            with open(local, "rb") as fh:
                out[rel] = fh.read()
        out.setdefault(*PLACEHOLDER)
        return out


def workspace_files(root: str | pathlib.Path) -> dict[str, bytes]:
    """Every file under ``root`` keyed by its path relative to it (``__pycache__`` left out)."""
    root = pathlib.Path(root)
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }

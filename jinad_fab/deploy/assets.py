"""Find the files jinad-fab ships: templates, playbooks, roles, inventories and ansible.cfg.

They live top-level in the repository and are shipped as package data under
``jinad_fab/assets/`` (symlinks in a checkout, real files in a wheel), so an installed jinad-fab
finds them with :mod:`importlib.resources` exactly like a checkout does.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from ..errors import BadInput

KINDS = ("templates", "playbooks", "roles", "inventories", "ansible.cfg")
PLAYBOOKS = ("deploy", "teardown", "upgrade", "verify")


class AssetNotFound(BadInput, LookupError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"{name!r} is not shipped with this jinad-fab")


def _root() -> Any:  # a Traversable
    return importlib.resources.files("jinad_fab").joinpath("assets")


def exists(*parts: str) -> bool:
    node = _root().joinpath(*parts)
    return node.is_file() or node.is_dir()


def read_text(*parts: str) -> str:
    node = _root().joinpath(*parts)
    if not node.is_file():
        raise AssetNotFound("/".join(parts))
    return node.read_text(encoding="utf-8")


@contextlib.contextmanager
def assets_dir() -> Iterator[pathlib.Path]:
    """A real directory holding every asset, for tools that need paths (ansible-playbook).

    Installed from a wheel or a checkout this is the package's own folder; from a zip import
    the assets are copied to a temporary folder that is removed afterwards.
    """
    root = _root()
    if isinstance(root, pathlib.Path):
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="jinad-fab-assets-") as tmp:
        _copy_tree(root, pathlib.Path(tmp))
        yield pathlib.Path(tmp)


def _copy_tree(node: Any, dest: pathlib.Path) -> None:
    for child in node.iterdir():
        target = dest / child.name
        if child.is_dir():
            target.mkdir()
            _copy_tree(child, target)
        else:
            with child.open("rb") as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


def playbook_path(root: pathlib.Path, name: str) -> pathlib.Path:
    """``deploy`` -> ``<assets>/playbooks/deploy.yml``; anything else is refused."""
    if name not in PLAYBOOKS:
        raise AssetNotFound(f"playbooks/{name}.yml")
    return root / "playbooks" / f"{name}.yml"


def inventory_path(root: pathlib.Path, name: str) -> pathlib.Path:
    """A shipped inventory by name (``local``, ``example``)."""
    path = root / "inventories" / name
    if not path.is_dir():
        raise AssetNotFound(f"inventories/{name}")
    return path

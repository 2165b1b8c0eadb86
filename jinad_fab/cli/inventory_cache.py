"""A cache of ``ansible-inventory --list`` for static inventories, so `jinad-fab hosts` does not
start Ansible (about a second) every time an operator runs it.

The cached JSON is Ansible's own answer; it is reused only while everything Ansible read to make
it is unchanged: the content of every file of the inventory (a folder's whole tree; a file plus
the ``group_vars``/``host_vars`` beside it), the Ansible configuration files, the ``ANSIBLE_*``
environment and the ansible-inventory program. Nothing is cached for inventories Ansible must
run or ask to read: executable files (inventory scripts), YAML naming an inventory ``plugin``
(cloud sources change without a file changing), vault-encrypted content, or a vault password.
Entries are 0600 in a 0700 folder under ``$XDG_CACHE_HOME/jinad-fab`` (or ``JINAD_FAB_CACHE_DIR``).

This is the CLI's edge: it reads the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import stat
from typing import Any

from ..deploy.inventory import CREDENTIALS, Inventory, ansible_inventory_json

_MAX_FILES = 2000
_PLUGIN = re.compile(rb"^plugin\s*:", re.MULTILINE)
_VAULT = (b"$ANSIBLE_VAULT", b"!vault")


class _Uncacheable(Exception):
    pass


def cache_dir() -> pathlib.Path:
    explicit = os.environ.get("JINAD_FAB_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "jinad-fab" / "inventory"


def _inventory_files(path: pathlib.Path) -> list[pathlib.Path]:
    if path.is_dir():
        roots = [path]
        files = []
    else:
        roots = [path.parent / "group_vars", path.parent / "host_vars"]
        files = [path]
    for root in roots:
        if root.is_dir():  # not the credentials a deploy keeps in an inventory folder: Ansible skips them
            files += sorted(p for p in root.rglob("*")
                            if not p.is_dir() and not (root == path and p.relative_to(root).parts[0] == CREDENTIALS))
    if len(files) > _MAX_FILES:
        raise _Uncacheable
    return files


def _config_files() -> list[pathlib.Path]:
    """Where Ansible looks for its configuration, in its order."""
    out = [pathlib.Path(os.environ["ANSIBLE_CONFIG"])] if os.environ.get("ANSIBLE_CONFIG") else []
    return [*out, pathlib.Path("ansible.cfg").resolve(), pathlib.Path("~/.ansible.cfg").expanduser(),
            pathlib.Path("/etc/ansible/ansible.cfg")]


def cache_key(path: pathlib.Path) -> str:
    """A digest of everything ansible-inventory's answer depends on; raises _Uncacheable."""
    from ..deploy.inventory import _ansible_tool

    h = hashlib.sha256()
    h.update(str(path.resolve()).encode() + b"\0")
    tool = pathlib.Path(_ansible_tool("ansible-inventory"))
    st = tool.stat()
    h.update(f"{tool}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for key in sorted(k for k in os.environ if k.startswith("ANSIBLE_")):
        h.update(f"{key}={os.environ[key]}\0".encode())
    for cfg in _config_files():
        with contextlib.suppress(OSError):
            h.update(str(cfg).encode() + b"\0" + cfg.read_bytes() + b"\0")
    for f in _inventory_files(path):
        st = f.lstat()
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode) or st.st_mode & 0o111:
            raise _Uncacheable  # a script Ansible would run, or a link it would follow
        data = f.read_bytes()
        if any(v in data for v in _VAULT) or (f.suffix in (".yml", ".yaml") and _PLUGIN.search(data)):
            raise _Uncacheable
        h.update(str(f.relative_to(path if path.is_dir() else path.parent)).encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _read(entry: pathlib.Path) -> dict[str, Any] | None:
    try:
        st = entry.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not ours, or readable by others: do not trust it
        data = json.loads(entry.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(entry: pathlib.Path, data: dict[str, Any]) -> None:
    entry.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, entry)


def load(path: pathlib.Path, vault_password_file: str | None = None) -> Inventory:
    """The inventory at ``path``, from the cache when nothing it depends on changed."""
    if vault_password_file:
        return Inventory.load(path, vault_password_file=vault_password_file)
    try:
        key = cache_key(path)
    except (_Uncacheable, OSError):
        return Inventory.load(path)
    entry = cache_dir() / f"{key}.json"
    data = _read(entry)
    if data is None:
        data = ansible_inventory_json(path)
        with contextlib.suppress(OSError):  # a read-only home only costs the next run a second
            _write(entry, data)
    return Inventory.from_ansible_json(data, source=path)

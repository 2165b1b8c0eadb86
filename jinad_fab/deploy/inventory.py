"""Ansible inventories as jinad-fab sees them: hosts with groups, vars and a daemon address.

Ansible itself parses the inventory (``ansible-inventory --list``), so every format, plugin,
``group_vars``/``host_vars`` folder and vault that Ansible accepts works here too; this module
turns that JSON into :class:`Host` objects and selects hosts with Ansible-like patterns.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import BadAddress, BadConfig, BadInput
from ..remote import DaemonAddress

DEFAULT_JINAD_PORT = 8000
CREDENTIALS = "credentials"
TOKEN_FILE = pathlib.Path(CREDENTIALS) / "jinad_token"

CLIENT_VARS = ("jinad_tls", "jinad_tls_cert_src", "jinad_ca_file", "jinad_scheme", "jinad_address", "jinad_port",
               "jinad_token", "jinad_token_file")
"""The variables that say how ``jinad-fab`` reaches a host's daemon (scheme, CA, address, port,
token). Every command reads them from the inventory alone, so they belong there: an Ansible extra
var would change the daemon for one ``provision`` run and leave every later command reaching it
the inventory's way (``-e jinad_tls=false``: a daemon serving HTTP, asked over HTTPS)."""

_resolver: Any = None


def _resolve(template: str, variables: Mapping[str, Any]) -> str:
    """Render a ``{{ var }}`` reference in a sandbox (jinja2 is imported on the first one)."""
    global _resolver
    import jinja2

    from ..templating import sandbox

    if _resolver is None:
        _resolver = sandbox()
    try:
        return _resolver.from_string(template).render(**variables)
    except jinja2.TemplateError as exc:
        raise _TemplateError(str(exc)) from exc


class _TemplateError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Host:
    """One inventory host. ``vars`` are its merged variables (host, group and ``all``)."""

    name: str
    groups: frozenset[str]
    vars: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def var(self, key: str, default: Any = None) -> Any:
        """A variable, with simple ``{{ other_var }}`` references resolved against the host's vars."""
        value = self.vars.get(key, default)
        if isinstance(value, str) and "{{" in value:
            try:
                return _resolve(value, {**self.vars, "inventory_hostname": self.name})
            except _TemplateError as exc:
                raise BadConfig(f"host {self.name}: cannot resolve {key}={value!r}: {exc}") from exc
        return value

    @property
    def address(self) -> str:
        """Where the daemon and SSH are reached: ``jinad_address``, else ``ansible_host``, else the name."""
        return str(self.var("jinad_address") or self.var("ansible_host") or self.name)

    @property
    def ssh_address(self) -> str:
        return str(self.var("ansible_host") or self.name)

    @property
    def connection(self) -> str:
        return str(self.var("ansible_connection") or "ssh")

    @property
    def ssh_port(self) -> int:
        return int(self.var("ansible_port") or 22)

    @property
    def ssh_user(self) -> str | None:
        user = self.var("ansible_user")
        return str(user) if user else None

    @property
    def ssh_key(self) -> str | None:
        key = self.var("ansible_ssh_private_key_file") or self.var("ansible_private_key_file")
        return os.path.expanduser(str(key)) if key else None

    @property
    def jinad_port(self) -> int:
        return int(self.var("jinad_port") or DEFAULT_JINAD_PORT)

    @property
    def gpus(self) -> int:
        """How many GPUs placement may hand out on this host (``jinad_gpus``, default 0)."""
        value = self.var("jinad_gpus") or 0
        try:
            count = int(value)
        except (TypeError, ValueError) as exc:
            raise BadConfig(f"host {self.name}: jinad_gpus must be a number, not {value!r}") from exc
        if count < 0:
            raise BadConfig(f"host {self.name}: jinad_gpus must not be negative")
        return count

    @property
    def tls(self) -> bool:
        """Whether the daemon serves HTTPS once deployed (``jinad_tls``, on unless set false)."""
        return truthy(self.var("jinad_tls", True))

    @property
    def own_certificate(self) -> bool:
        """The operator brings this host's certificate (``jinad_tls_cert_src``): no fleet CA for it."""
        return bool(self.vars.get("jinad_tls_cert_src"))

    @property
    def certificate_names(self) -> list[str]:
        """The subject alternative names of the host's certificate: its inventory name and address."""
        return list(dict.fromkeys([self.name, self.address.strip("[]")]))

    @property
    def daemon_address(self) -> DaemonAddress:
        """Where this host's jinad answers: ``jinad_scheme`` (http, https), the address and ``jinad_port``."""
        scheme, port = str(self.var("jinad_scheme") or "http"), self.jinad_port
        try:
            return DaemonAddress.parse(f"{scheme}://{_bracket(self.address)}:{port}")
        except BadAddress as exc:
            raise BadConfig(f"host {self.name}: {exc.reason} (jinad_scheme, jinad_address, jinad_port)") from exc

    @property
    def daemon_url(self) -> str:
        return self.daemon_address.url


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "off", "0", "")
    return bool(value)


def _with_tls_defaults(name: str, variables: dict[str, Any], directory: pathlib.Path | None) -> dict[str, Any]:
    """What a deploy with TLS (the default) implies for the clients, unless the inventory says otherwise:
    ``jinad_scheme: https`` once the host has a certificate (issued from the fleet CA next to the
    inventory, or the operator's own ``jinad_tls_cert_src``), and ``jinad_ca_file`` the fleet CA."""
    from .pki import CA_CERT, host_cert_path, tls_dir

    if directory is None or not truthy(variables.get("jinad_tls", True)):
        return variables
    folder = tls_dir(directory)
    own = bool(variables.get("jinad_tls_cert_src"))
    try:
        issued = host_cert_path(folder, name).is_file()
    except BadConfig:  # a name no certificate file can carry: it has none
        issued = False
    out = dict(variables)
    if own or issued:
        out.setdefault("jinad_scheme", "https")
    if issued and not own and (folder / CA_CERT).is_file():
        out.setdefault("jinad_ca_file", str(folder / CA_CERT))
    return out


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


@dataclasses.dataclass(frozen=True)
class Inventory:
    """Hosts by name and groups by name (each group lists every host in it, children included)."""

    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]
    source: pathlib.Path | None = None
    tree: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False)
    """group -> (its own hosts, its child groups), as Ansible declared them (for host patterns)."""

    # ---- construction --------------------------------------------------------------------------

    @classmethod
    def from_ansible_json(cls, data: Mapping[str, Any], source: str | pathlib.Path | None = None) -> Inventory:
        """Build from the output of ``ansible-inventory --list``."""
        hostvars: Mapping[str, Mapping[str, Any]] = data.get("_meta", {}).get("hostvars", {})
        direct: dict[str, list[str]] = {}
        children: dict[str, list[str]] = {}
        for group, body in data.items():
            if group == "_meta" or not isinstance(body, Mapping):
                continue
            direct[group] = list(body.get("hosts", []))
            children[group] = list(body.get("children", []))

        members: dict[str, list[str]] = {}

        def collect(group: str, seen: frozenset[str] = frozenset()) -> list[str]:
            if group in members:
                return members[group]
            if group in seen:
                raise BadConfig(f"inventory group {group!r} contains itself")
            found = list(direct.get(group, []))
            for child in children.get(group, []):
                found.extend(h for h in collect(child, seen | {group}) if h not in found)
            members[group] = found
            return found

        for group in direct:
            collect(group)
        # inventory order: as Ansible lists them under `all`, then any host only in hostvars
        all_hosts: list[str] = list(members.get("all", []))
        for group in direct:
            all_hosts.extend(h for h in members[group] if h not in all_hosts)
        all_hosts.extend(h for h in hostvars if h not in all_hosts)
        members["all"] = all_hosts
        host_groups: dict[str, set[str]] = {h: {"all"} for h in all_hosts}
        for group, names in members.items():
            for name in names:
                host_groups.setdefault(name, {"all"}).add(group)
        directory = None
        if source is not None:
            directory = pathlib.Path(source) if pathlib.Path(source).is_dir() else pathlib.Path(source).parent
        hosts = {
            name: Host(name=name, groups=frozenset(host_groups[name]),
                       vars=_with_tls_defaults(name, dict(hostvars.get(name, {})), directory))
            for name in all_hosts
        }
        groups = {g: tuple(dict.fromkeys(hs)) for g, hs in members.items()}
        tree = {g: (tuple(direct[g]), tuple(children[g])) for g in direct}
        return cls(hosts=hosts, groups=groups, source=pathlib.Path(source) if source else None, tree=tree)

    @classmethod
    def load(cls, path: str | pathlib.Path, *, vault_password_file: str | None = None,
             timeout: float = 60.0) -> Inventory:
        """Let Ansible parse ``path`` (a file or a folder with group_vars), then build from its JSON."""
        path = pathlib.Path(path)
        return cls.from_ansible_json(ansible_inventory_json(path, vault_password_file, timeout), source=path)

    # ---- queries -------------------------------------------------------------------------------

    @property
    def directory(self) -> pathlib.Path | None:
        """The inventory's folder (Ansible's ``inventory_dir``)."""
        if self.source is None:
            return None
        return self.source if self.source.is_dir() else self.source.parent

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise BadInput(f"no host {name!r} in the inventory (hosts: {', '.join(self.hosts) or 'none'})") from None

    def group(self, name: str) -> list[Host]:
        if name not in self.groups:
            raise BadInput(f"no group {name!r} in the inventory (groups: {', '.join(sorted(self.groups))})")
        return [self.hosts[h] for h in self.groups[name]]

    def select(self, pattern: str | None = None) -> list[Host]:
        """Hosts matching an Ansible host pattern, resolved by ansible-core's own InventoryManager,
        so ``-l`` means here what it means to ``ansible-playbook``: ``all``, ``gpu``, ``gpu:cpu``,
        ``all:!gpu-2``, ``cpu:&rack1``, ``gpu-*``, ``gpu[0]``, ``cpu[0:1]``, ``~gpu-\\d+``,
        ``cpu-2,gpu-1``. The order is Ansible's (pattern order, group order within a group)."""
        if not pattern or pattern in ("all", "*"):
            return list(self.hosts.values())
        from ansible.errors import AnsibleError

        try:
            found = self._ansible.get_hosts(pattern)
        except AnsibleError as exc:  # a subscript past the group's end, a regex that does not compile
            raise BadInput(f"bad host pattern {pattern!r}: {exc.message}") from exc
        chosen = [self.hosts[h.name] for h in found if h.name in self.hosts]
        if not chosen:
            raise BadInput(f"{pattern!r} matches no host or group (groups: {', '.join(sorted(self.groups))})")
        return chosen

    @functools.cached_property
    def _ansible(self) -> Any:
        """An ansible-core InventoryManager holding these hosts and groups (no vars: patterns only)."""
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader

        manager = InventoryManager(loader=DataLoader(), sources=[], parse=False)
        data = manager._inventory  # filled from the JSON ansible-inventory printed for us
        tree = self.tree or {g: (names, ()) for g, names in self.groups.items()}
        for group in tree:
            data.add_group(group)
        for group, (hosts, children) in tree.items():
            for name in hosts:
                data.add_host(name, group=group)
            for child in children:
                data.add_child(group, child)
        for name in self.hosts:
            data.add_host(name)
        data.reconcile_inventory()
        return manager

    def ca_file_for(self, host: Host) -> str | None:
        """The CA bundle to check ``host``'s HTTPS daemon with: ``jinad_ca_file`` (relative to the
        inventory), else None (the system's CAs)."""
        value = host.var("jinad_ca_file")
        if not value:
            return None
        path = pathlib.Path(os.path.expanduser(str(value)))
        if not path.is_absolute() and self.directory is not None:
            path = self.directory / path
        return str(path)

    def token_file_for(self, host: Host) -> pathlib.Path | None:
        """The controller file holding ``host``'s token (``jinad_token_file``, default
        ``credentials/jinad_token`` by the inventory); None when the inventory sets ``jinad_token``."""
        value = host.vars.get("jinad_token")
        if isinstance(value, str) and value and "{{" not in value:
            return None
        candidate = host.vars.get("jinad_token_file")
        if isinstance(candidate, str) and candidate and "{{" not in candidate:
            path = pathlib.Path(os.path.expanduser(candidate))
            if not path.is_absolute() and self.directory is not None:
                path = self.directory / path
            return path
        return self.directory / TOKEN_FILE if self.directory is not None else None

    def token_for(self, host: Host) -> str | None:
        """The daemon token for ``host``: a plain ``jinad_token`` var, else the token file the jinad
        role generated (``jinad_token_file``, default ``credentials/jinad_token`` by the inventory)."""
        value = host.vars.get("jinad_token")
        if isinstance(value, str) and value and "{{" not in value:
            return value
        path = self.token_file_for(host)
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").split()[0]
        except (OSError, IndexError):
            return None


def ansible_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What Ansible must be told whenever it reads an inventory: skip the ``credentials`` folder a
    deploy keeps inside an inventory folder. Ansible reads every file of an inventory folder as an
    inventory, and its ini parser would take a token file's one line for a host name (and a PEM
    file's lines for garbage)."""
    environ = os.environ if environ is None else environ
    own = environ.get("ANSIBLE_INVENTORY_IGNORE_REGEX", "")
    return {"ANSIBLE_INVENTORY_IGNORE_REGEX": ",".join(filter(None, [own, f"^{CREDENTIALS}$"]))}


def ansible_inventory_json(path: pathlib.Path, vault_password_file: str | None = None,
                           timeout: float = 60.0) -> dict[str, Any]:
    """``ansible-inventory -i path --list``: the inventory as Ansible itself reads it."""
    if not path.exists():
        raise BadInput(f"inventory {str(path)!r} does not exist")
    cmd = [_ansible_tool("ansible-inventory"), "-i", str(path), "--list"]
    if vault_password_file:
        cmd += ["--vault-password-file", vault_password_file]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, **ansible_environment()})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BadConfig(f"cannot run ansible-inventory on {path}: {exc}") from exc
    if proc.returncode != 0:
        raise BadConfig(f"ansible-inventory refused {path}: {proc.stderr.strip()[-2000:]}")
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise BadConfig(f"ansible-inventory printed no JSON for {path}") from exc
    if not isinstance(data, dict):
        raise BadConfig(f"ansible-inventory printed no inventory for {path}")
    return data


def shipped_inventory(root: pathlib.Path, name: str) -> pathlib.Path:
    """A shipped inventory (``local``, ``example``) inside the assets folder ``root``."""
    path = root / "inventories" / name
    if "/" in name or name.startswith(".") or not path.is_dir():
        from ..templating import AssetNotFound

        raise AssetNotFound(f"inventories/{name}")
    return path


def _ansible_tool(name: str) -> str:
    """The Ansible CLI next to this interpreter (a venv's bin), else the one on PATH."""
    beside = pathlib.Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise BadConfig(f"{name} is not installed; try: pip install 'jinad-fab[deploy]'")
    return found

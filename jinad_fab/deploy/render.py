"""Render what jinad-fab would use: concrete Flow YAML for an inventory, the jinad service unit.

Templates render in the one sandbox of :mod:`jinad_fab.templating` (immutable, StrictUndefined):
user data is always a variable, never template source - except a Flow file that is itself a
template, which renders in the same sandbox. YAML is read with a safe loader; local tags
(``!Flow``, executor tags) are carried through unchanged.
"""

from __future__ import annotations

import dataclasses
import getpass
import importlib.metadata
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.sandbox

from .. import safe_yaml, templating
from ..errors import BadConfig
from ..safe_yaml import Tagged
from .inventory import Host, Inventory
from .placement import Placement, apply, place, pod_specs

FLOW_TEMPLATE = "flow.yml.j2"
UNIT_TEMPLATE = ("roles", "jinad", "templates", "jinad.service.j2")
ROLE_DEFAULTS = ("roles", "jinad", "defaults", "main.yml")


# ---- YAML that keeps local tags ---------------------------------------------------------------


def load_yaml(text: str, what: str = "YAML") -> Any:
    """Flow YAML to render: local tags (``!Flow``) kept as :class:`Tagged`, so they are written back."""
    return safe_yaml.loads(text, mode="keep", name=what, what=what)


dump_yaml = safe_yaml.dumps


# ---- rendering: the one sandbox of jinad_fab.templating -----------------------------------------


def render_template(name: str, context: Mapping[str, Any]) -> str:
    """Render a shipped template (``flow.yml.j2`` or ``roles/jinad/templates/...``)."""
    return templating.render(name, **context)


def render_string(source: str, context: Mapping[str, Any], what: str = "template") -> str:
    return templating.render_string(source, context, what)


def _version() -> str:
    try:
        return importlib.metadata.version("jinad-fab")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# ---- Flow YAML ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RenderedFlow:
    text: str
    flow: Any
    placement: Placement
    files: Mapping[str, bytes] = dataclasses.field(default_factory=dict)
    """Files the Flow names that must travel with it (paths relative to the Flow file): the CA
    bundles its Pods' daemons are checked with."""


CA_FOLDER = "jinad-fab-ca"


def _with_ca_files(flow: dict[str, Any], placement: Placement,
                   inventory: Inventory) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A Pod placed on an HTTPS host with a CA bundle (``jinad_ca_file``, the fleet CA by default)
    gets ``ca_file`` naming a copy of it shipped beside the Flow: the Flow checks that daemon
    wherever it runs (on a daemon, in a workspace, the controller's path means nothing)."""
    import hashlib

    names: dict[str, str] = {}
    files: dict[str, bytes] = {}
    remote = {p.get("name") for p in flow.get("pods", []) if p.get("host")}  # not those run by the Flow itself
    for a in placement:
        if not a.host or a.host not in inventory.hosts or a.pod not in remote:
            continue
        host = inventory[a.host]
        path = inventory.ca_file_for(host)
        if not path or host.daemon_address.scheme != "https":
            continue
        try:
            data = pathlib.Path(path).read_bytes()
        except OSError as exc:
            raise BadConfig(f"host {host.name}: cannot read its CA bundle {path} (jinad_ca_file): "
                            f"{exc.strerror or exc}") from exc
        name = f"{CA_FOLDER}/{hashlib.sha256(data).hexdigest()[:16]}.pem"
        files[name] = data
        names[a.pod] = name
    if not names:
        return flow, {}
    # a Pod on the Gateway's host runs in the Flow's own process there (no `host:`): no daemon to check
    pods = [{**p, "ca_file": names[p["name"]]} if p.get("name") in names and p.get("host") and not p.get("ca_file")
            else p for p in flow.get("pods", [])]
    return {**flow, "pods": pods}, files


def inventory_context(inventory: Inventory) -> dict[str, Any]:
    """What a Flow template may read: ``groups`` (name -> host names) and ``hostvars``."""
    return {
        "groups": {g: list(hs) for g, hs in inventory.groups.items()},
        "hostvars": {name: dict(h.vars) for name, h in inventory.hosts.items()},
    }


def render_flow(source: str, inventory: Inventory, *, what: str = "Flow YAML",
                inventory_name: str | None = None, gateway: str | None = None,
                place_gateway: bool = False) -> RenderedFlow:
    """Concrete Flow YAML for ``inventory``: placement applied, ``!Flow`` kept, ready for `flow up`.

    With ``place_gateway`` (or a ``gateway:`` key in the Flow, or ``gateway``: a host name or
    pattern) the Gateway is placed too (``placement.gateway``)."""
    if "{{" in source or "{%" in source:
        source = render_string(source, inventory_context(inventory), what=what)
    data = load_yaml(source, what)
    tagged = isinstance(data, Tagged)
    body = data.value if tagged else data
    if not isinstance(body, Mapping):
        raise BadConfig(f"{what}: expected a mapping (`!Flow` with `pods:`)")
    gw = body.get("gateway")
    if gw is not None and not isinstance(gw, Mapping):
        raise BadConfig(f"{what}: `gateway:` must be a mapping such as {{hosts: cpu}}")
    if gateway:
        gw = {"host": gateway} if gateway in inventory.hosts else {"hosts": gateway}
    elif gw is None and place_gateway:
        gw = {}
    placement = place(pod_specs(body), inventory, gateway=gw)
    concrete, files = _with_ca_files(apply(body, placement, inventory), placement, inventory)
    flow = Tagged(data.tag, concrete) if tagged else concrete
    text = render_template(FLOW_TEMPLATE, {
        "flow_yaml": dump_yaml(flow),
        "placement": [a.as_dict() for a in placement],
        "gateway": placement.gateway.as_dict() if placement.gateway else None,
        "inventory": inventory_name or (str(inventory.source) if inventory.source else "(inline)"),
        "version": _version(),
    })
    # what we print must load again, or `flow up` would ship something broken
    load_yaml(text, f"rendered {what}")
    return RenderedFlow(text=text, flow=flow, placement=placement, files=files)


# ---- the jinad unit ----------------------------------------------------------------------------


def _controller_facts() -> dict[str, Any]:
    """The few facts the local inventory refers to, for hosts reached with connection=local."""
    return {"user_id": getpass.getuser(), "user_gid": os.getgid(), "user_dir": str(pathlib.Path.home())}


def host_vars_for_role(host: Host) -> dict[str, Any]:
    """The jinad role's defaults overlaid with ``host``'s vars, ``{{ refs }}`` resolved where they
    can be (a lookup that only Ansible can run, like the token's, is left alone)."""
    defaults = load_yaml(templating.read_asset(*ROLE_DEFAULTS), "jinad role defaults") or {}
    merged: dict[str, Any] = {**defaults, **dict(host.vars), "inventory_hostname": host.name}
    if host.connection == "local":
        merged.setdefault("ansible_facts", _controller_facts())
    for _ in range(5):  # references nest a few levels (jinad_venv -> jinad_install_dir -> facts)
        changed = False
        for key, value in list(merged.items()):
            if isinstance(value, str) and "{{" in value:
                try:
                    rendered = templating.environment().from_string(value).render(**merged)
                except jinja2.TemplateError:
                    continue
                if rendered != value:
                    merged[key], changed = rendered, True
        if not changed:
            break
    return merged


def render_unit(host: Host) -> str:
    """The systemd unit the jinad role installs on ``host``."""
    return render_template("/".join(UNIT_TEMPLATE), host_vars_for_role(host))

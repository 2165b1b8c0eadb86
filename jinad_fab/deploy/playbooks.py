"""Run the shipped playbooks (deploy, teardown, upgrade, verify) with ansible-runner.

Ansible is pointed at the ``ansible.cfg`` and roles shipped inside the package, so a
wheel-installed jinad-fab provisions exactly like a checkout. Every host's recap (ok, changed,
failed, unreachable, skipped) and the message of its last failure come back in a
:class:`~jinad_fab.deploy.results.GroupResult`; ``on_event`` sees each task result as it happens.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import BadConfig
from ..templating import AssetNotFound, assets_dir
from .inventory import ansible_environment
from .results import GroupResult

PLAYBOOKS = ("deploy", "teardown", "upgrade", "rollback", "verify", "lock")
"""The shipped playbooks, by name (``playbooks/<name>.yml`` in the assets)."""

_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "runner_item_on_failed": "failed",
}


@dataclasses.dataclass
class HostRecap:
    """One host's PLAY RECAP line, plus the message of its last failed task."""

    host: str
    tasks_ok: int = 0
    changed: int = 0
    failed_tasks: int = 0
    unreachable_tasks: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    message: str = ""
    changes: list[dict[str, str]] = dataclasses.field(default_factory=list)
    """Each task that changed (or, in check mode, would change) something: its name and diff.
    Tasks with ``no_log`` are counted in ``changed`` but cannot be listed: Ansible hides their result."""

    @property
    def ok(self) -> bool:
        return self.failed_tasks == 0 and self.unreachable_tasks == 0

    @property
    def unreachable(self) -> bool:
        return self.unreachable_tasks > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "succeeded": self.ok, "ok": self.tasks_ok, "changed": self.changed,
            "failed": self.failed_tasks, "unreachable": self.unreachable_tasks, "skipped": self.skipped,
            "rescued": self.rescued, "ignored": self.ignored, "message": self.message,
            "changes": list(self.changes),
        }


@dataclasses.dataclass(frozen=True)
class TaskEvent:
    """One task's result on one host, as it happens (for progress displays)."""

    host: str
    task: str
    status: str  # ok | changed | failed | unreachable | skipped
    message: str = ""
    diff: str = ""  # a unified diff of what the task changed, when Ansible ran with --diff


@dataclasses.dataclass
class PlaybookRun:
    playbook: str
    rc: int
    status: str
    hosts: GroupResult[HostRecap]

    def as_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "rc": self.rc, "status": self.status, "hosts": self.hosts.as_dict()}


def recaps_from_stats(stats: Mapping[str, Mapping[str, int]] | None,
                      messages: Mapping[str, str] | None = None,
                      changes: Mapping[str, list[dict[str, str]]] | None = None) -> GroupResult[HostRecap]:
    """ansible-runner's ``stats`` (``{"ok": {host: n}, "failures": {...}, "dark": {...}, ...}``)
    turned around into one recap per host."""
    stats = stats or {}
    messages = messages or {}
    hosts: list[str] = []
    for counts in stats.values():
        for host in counts or {}:
            if host not in hosts:
                hosts.append(host)
    fields = {"ok": "tasks_ok", "changed": "changed", "failures": "failed_tasks", "dark": "unreachable_tasks",
              "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
    recaps = []
    for host in hosts:
        values = {attr: int((stats.get(key) or {}).get(host, 0)) for key, attr in fields.items()}
        recaps.append(HostRecap(host=host, message=messages.get(host, ""),
                                changes=list((changes or {}).get(host, [])), **values))
    return GroupResult.of(recaps)


def _message(res: Mapping[str, Any]) -> str:
    for key in ("msg", "stderr", "reason"):
        value = res.get(key)
        if value:
            return str(value).strip().splitlines()[-1][:500] if isinstance(value, str) else str(value)[:500]
    return ""


def _side(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines(keepends=True)
    return [line + "\n" for line in json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()]


def render_diff(diff: Any) -> str:
    """Ansible's ``diff`` result (one mapping or a list: before/after with headers, or a prepared
    text) as one unified diff, the way ``ansible-playbook --diff`` shows it."""
    parts = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        if part.get("prepared"):
            out.append(str(part["prepared"]).rstrip("\n") + "\n")
            continue
        if "before" not in part and "after" not in part:
            continue
        before, after = _side(part.get("before")), _side(part.get("after"))
        if before == after:
            continue
        out.extend(difflib.unified_diff(before, after, fromfile=str(part.get("before_header") or "before"),
                                        tofile=str(part.get("after_header") or "after")))
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
    return "".join(out)


def task_event(event: Mapping[str, Any]) -> TaskEvent | None:
    """A runner event as a TaskEvent, or None for events that are not a host's task result."""
    kind = _RESULT_EVENTS.get(event.get("event", ""))
    if kind is None:
        return None
    data = event.get("event_data") or {}
    res = data.get("res") or {}
    if kind == "ok" and res.get("changed"):
        kind = "changed"
    message = _message(res) if kind in ("failed", "unreachable") else ""
    if data.get("ignore_errors") and kind == "failed":
        kind = "ok"
    diff = render_diff(res.get("diff")) if kind == "changed" and res.get("diff") else ""
    return TaskEvent(host=str(data.get("host", "?")), task=str(data.get("task", "")), status=kind, message=message,
                     diff=diff)


def playbook_path(root: pathlib.Path, name: str) -> pathlib.Path:
    """``deploy`` -> ``<assets>/playbooks/deploy.yml``; anything else is refused."""
    if name not in PLAYBOOKS:
        raise AssetNotFound(f"playbooks/{name}.yml")
    return root / "playbooks" / f"{name}.yml"


def run_playbook(
    name: str,
    inventory: str | os.PathLike[str],
    *,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    forks: int | None = None,
    extravars: Mapping[str, Any] | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
    timeout: int | None = None,
    verbosity: int = 0,
    env: Mapping[str, str] | None = None,
) -> PlaybookRun:
    """Run a shipped playbook (``deploy``, ``teardown``, ``upgrade``, ``verify``) on ``inventory``.

    ``check`` runs Ansible's check mode (nothing changes; each host's ``changes`` lists what
    would); ``diff`` asks modules for the diff of what they change (or would change).
    ``env`` adds environment variables for Ansible (the CLI passes a PATH that holds this
    interpreter's ``bin``, where ``ansible-playbook`` lives). Returns every host's recap; raises BadConfig only when Ansible could not start at all (bad
    inventory, syntax error). Failed hosts are data, not exceptions: see ``hosts.failed``.
    """
    try:
        import ansible_runner
    except ImportError as exc:
        raise BadConfig("ansible-runner is not installed; try: pip install 'jinad-fab[deploy]'") from exc

    messages: dict[str, str] = {}
    changes: dict[str, list[dict[str, str]]] = {}

    def handle(event: dict[str, Any]) -> bool:
        te = task_event(event)
        if te is not None:
            if te.status in ("failed", "unreachable") and te.message:
                messages[te.host] = f"{te.task}: {te.message}"
            if te.status == "changed":
                changes.setdefault(te.host, []).append({"task": te.task, "diff": te.diff})
            if on_event is not None:
                on_event(te)
        return True

    with assets_dir() as root, tempfile.TemporaryDirectory(prefix="jinad-fab-runner-") as private:
        playbook = playbook_path(root, name)
        envvars = {
            **dict(env or {}),
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(root / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            **ansible_environment(),
        }
        cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on) or None
        runner = ansible_runner.run(
            private_data_dir=private,
            playbook=str(playbook),
            inventory=str(pathlib.Path(inventory).resolve()),
            limit=limit,
            forks=forks,
            cmdline=cmdline,
            extravars=dict(extravars or {}),
            envvars=envvars,
            event_handler=handle,
            quiet=True,
            timeout=timeout,
            verbosity=verbosity,
            json_mode=False,
        )
        stdout = ""
        out = runner.stdout  # ansible-runner opens the artifact file anew on each access: close it here
        if out:
            with out:
                stdout = out.read()
        hosts = recaps_from_stats(runner.stats, messages, changes)
        if runner.rc != 0 and not hosts:
            tail = "\n".join(stdout.strip().splitlines()[-15:])
            raise BadConfig(f"ansible-playbook {name}.yml did not run (rc={runner.rc}):\n{tail}")
        return PlaybookRun(playbook=f"{name}.yml", rc=runner.rc, status=runner.status, hosts=hosts)

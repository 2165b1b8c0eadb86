"""One change at a time per inventory and per host: deploy locks, like Kamal's, that name who holds them.

``provision deploy|upgrade|rollback|teardown`` take an exclusive ``flock`` on a lock file kept
beside the inventory (or, when that folder cannot be written, in a per-user folder the CLI
names). A second run either waits for it or fails at once with the holder's user, host, pid,
command and start time, which the holder writes into the file once it has the lock.

``flock`` belongs to the open file, so a holder that dies for any reason (SIGKILL included)
releases the lock with it: there is never a stale lock to break by hand.

That lock lives on one controller. Two controllers (two operators' machines, CI and a laptop)
each have their own, so :func:`host_locks` also takes a lock on every host of the run with the
shipped ``lock.yml`` playbook: a file created with ``O_EXCL`` that names its holder and this run's
id, released by the run that took it, even when the run fails. Only a controller that dies
mid-run leaves it behind; ``jinad-fab provision unlock`` breaks it, naming who held it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import getpass
import hashlib
import json
import os
import pathlib
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import DeployError

LOCK_NAME = ".jinad-fab.lock"


@dataclasses.dataclass(frozen=True)
class LockHolder:
    user: str
    host: str
    pid: int
    command: str
    since: str

    def __str__(self) -> str:
        return f"{self.user}@{self.host} (pid {self.pid}, `{self.command}`, since {self.since})"

    @classmethod
    def me(cls, command: str) -> LockHolder:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        return cls(user=getpass.getuser(), host=socket.gethostname(), pid=os.getpid(), command=command,
                   since=now.isoformat().replace("+00:00", "Z"))


class DeployLocked(DeployError):
    """Another run holds this inventory's deploy lock (exit code 2); ``holder`` says who, or, for
    locks on the hosts themselves, ``hosts`` maps each locked host to who holds its lock."""

    def __init__(self, inventory: str, holder: LockHolder | None, waited: float = 0.0,
                 hosts: Mapping[str, str] | None = None):
        self.inventory = inventory
        self.holder = holder
        self.hosts = dict(hosts or {})
        after = f" after waiting {waited:g}s" if waited else ""
        if self.hosts:
            named = "; ".join(f"{host}: {why}" for host, why in sorted(self.hosts.items()))
            super().__init__(f"hosts of inventory {inventory} are locked by another run{after}: {named}. "
                             "Wait for it (--lock-wait SECONDS), or, if its controller died, "
                             "break the locks with `jinad-fab provision unlock`")
            return
        who = str(holder) if holder else "another run (it has not written its name yet)"
        super().__init__(f"inventory {inventory} is locked by {who}{after}; "
                         "wait for it, or pass --lock-wait SECONDS to queue behind it")


def lock_path(inventory: str | os.PathLike[str], fallback_dir: str | os.PathLike[str]) -> pathlib.Path:
    """The lock file of ``inventory``: in its folder when writable, else in ``fallback_dir``
    under a name made from the inventory's resolved path (so each inventory has its own)."""
    inv = pathlib.Path(inventory).resolve()
    folder = inv if inv.is_dir() else inv.parent
    if os.access(folder, os.W_OK):
        return folder / LOCK_NAME
    digest = hashlib.sha256(str(inv).encode()).hexdigest()[:16]
    return pathlib.Path(fallback_dir) / f"{inv.name}-{digest}.lock"


def read_holder(path: str | os.PathLike[str]) -> LockHolder | None:
    try:
        data: Any = json.loads(pathlib.Path(path).read_text(encoding="utf-8") or "null")
        return LockHolder(**data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def deploy_lock(path: str | os.PathLike[str], *, command: str, inventory: str, wait: float = 0.0,
                poll: float = 0.2, on_wait: Any = None) -> Iterator[LockHolder]:
    """Hold the lock at ``path`` for the ``with`` block; wait up to ``wait`` seconds for it.

    ``on_wait(holder)`` is called once when the lock is busy and we are going to wait.
    Raises :class:`DeployLocked` naming the holder when it is still busy after ``wait``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        start = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            waited = time.monotonic() - start
            if waited >= wait:
                raise DeployLocked(inventory, read_holder(path), waited=round(waited, 1) if wait else 0.0)
            if not told and on_wait is not None:
                on_wait(read_holder(path))
                told = True
            time.sleep(min(poll, max(0.0, wait - waited)))
        me = LockHolder.me(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(dataclasses.asdict(me)).encode(), 0)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # released: nobody holds it (the file stays, it is the lock)
    finally:
        os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def host_locks(inventory: str | os.PathLike[str], holder: LockHolder, *, limit: str | None = None,
               wait: float = 0.0, forks: int | None = None, extravars: Mapping[str, Any] | None = None,
               env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Hold the deploy lock on every host of the run (``inventory`` and ``limit``) for the ``with``
    block; yields this run's id. Raises :class:`DeployLocked` with each busy host's holder when
    another run still holds some after ``wait`` seconds, releasing the ones this run took.

    A host that cannot be reached is not a conflict: the run itself will report it.
    """
    from .playbooks import run_playbook  # ansible-runner is only needed once a playbook runs

    run_id = uuid.uuid4().hex
    common = {**dict(extravars or {}), "jinad_lock_run": run_id}

    def release() -> None:
        run_playbook("lock", inventory, limit=limit, forks=forks, env=env,
                     extravars={**common, "jinad_lock_action": "release"})

    taken = run_playbook("lock", inventory, limit=limit, forks=forks, env=env, extravars={
        **common, "jinad_lock_action": "acquire", "jinad_lock_wait": int(wait),
        "jinad_lock_holder": {**dataclasses.asdict(holder), "run": run_id}})
    busy = {host: recap.message.partition(": ")[2] or recap.message
            for host, recap in taken.hosts.items() if recap.failed_tasks}
    try:
        if busy:
            raise DeployLocked(str(inventory), None, waited=float(wait), hosts=busy)
        yield run_id
    finally:
        release()


def break_host_locks(inventory: str | os.PathLike[str], *, limit: str | None = None, forks: int | None = None,
                     extravars: Mapping[str, Any] | None = None,
                     env: Mapping[str, str] | None = None) -> list[str]:
    """Remove the deploy lock on every host of ``inventory`` (``limit``) whoever holds it; returns
    the hosts where there was one."""
    from .playbooks import run_playbook

    broken: list[str] = []

    def seen(event: Any) -> None:
        if event.status == "changed":
            broken.append(event.host)

    run = run_playbook("lock", inventory, limit=limit, forks=forks, env=env, on_event=seen,
                       extravars={**dict(extravars or {}), "jinad_lock_action": "break", "jinad_lock_run": ""})
    run.hosts.raise_for_failures("lock.yml")
    return sorted(broken)

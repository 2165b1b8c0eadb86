"""Ad-hoc work on many hosts over SSH with Fabric: run a command, push files, follow logs.

:class:`SshGroup` is like Fabric's ``ThreadingGroup`` with two differences that matter for
fleets: parallelism is bounded (``max_parallel`` connections at a time), and every host's
outcome comes back in a :class:`~jinad_fab.deploy.results.GroupResult` - a host that cannot be
reached is marked ``unreachable`` rather than aborting the others. Hosts with
``ansible_connection=local`` run on this machine without SSH.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import pathlib
import shlex
import shutil
import socket
import stat
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import BadInput
from .inventory import Host
from .results import GroupResult

OutputCallback = Callable[[str, str, str], None]
"""Called as ``(host, stream, line)`` for each line a command prints; stream is out or err."""


@dataclasses.dataclass
class CommandResult:
    host: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return not self.error and not self.unreachable and self.exit_code == 0

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "ok": self.ok, "exit_code": self.exit_code, "stdout": self.stdout,
                "stderr": self.stderr, "error": self.error, "unreachable": self.unreachable}


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(unreachable?, message) for an exception raised while talking to a host.

    The one place foreign SSH/transport errors are interpreted: anything that stops us from
    getting a shell (refused, timed out, DNS, SSH handshake, authentication) counts as
    unreachable, as it does for Ansible; a command that ran and misbehaved does not.
    """
    import invoke
    import paramiko

    if isinstance(exc, invoke.CommandTimedOut):
        return False, f"command timed out after {exc.timeout}s"
    if isinstance(exc, paramiko.AuthenticationException):
        return True, f"authentication failed: {exc}"
    if isinstance(exc, (paramiko.SSHException, socket.timeout, socket.gaierror, TimeoutError, EOFError)):
        return True, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):  # refused, no route (paramiko's NoValidConnectionsError is one)
        return True, f"{type(exc).__name__}: {exc}"
    return False, f"{type(exc).__name__}: {exc}"


class _LineWriter:
    """A file-like sink that hands complete lines to a callback (Fabric writes arbitrary chunks)."""

    def __init__(self, host: str, stream: str, callback: OutputCallback):
        self.host, self.stream, self.callback = host, stream, callback
        self._buf = ""
        self._lock = threading.Lock()

    def write(self, data: str) -> int:
        with self._lock:
            self._buf += data
            *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self.callback(self.host, self.stream, line)
        return len(data)

    def flush(self) -> None:
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest:
            self.callback(self.host, self.stream, rest)


class SshGroup:
    """A bounded-parallel Fabric group over inventory hosts."""

    def __init__(
        self,
        hosts: Sequence[Host],
        *,
        max_parallel: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
        strict_host_keys: bool = False,
    ):
        if max_parallel < 1:
            raise BadInput("max_parallel must be at least 1")
        self.hosts = list(hosts)
        self.max_parallel = max_parallel
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.strict_host_keys = strict_host_keys

    # ---- connections ---------------------------------------------------------------------------

    def _connection(self, host: Host) -> Any:
        import fabric
        import paramiko

        connect_kwargs: dict[str, Any] = {"banner_timeout": self.connect_timeout,
                                          "auth_timeout": self.connect_timeout}
        if host.ssh_key:
            connect_kwargs.update(key_filename=[host.ssh_key], look_for_keys=False, allow_agent=False)
        password = host.var("ansible_password") or host.var("ansible_ssh_pass")
        if password:
            connect_kwargs["password"] = str(password)
        config = fabric.Config(overrides={
            "run": {"hide": True, "warn": True, "in_stream": False},
            "timeouts": {"connect": self.connect_timeout, "command": self.command_timeout},
            "load_ssh_configs": False,
        })
        conn = fabric.Connection(
            host.ssh_address, user=host.ssh_user, port=host.ssh_port, config=config,
            connect_timeout=self.connect_timeout, connect_kwargs=connect_kwargs,
        )
        if self.strict_host_keys:
            # Fabric accepts any host key by default (like Ansible's host_key_checking=False)
            conn.client.load_system_host_keys()
            conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return conn

    def _each(self, fn: Callable[[Host], CommandResult]) -> GroupResult[CommandResult]:
        def guarded(host: Host) -> CommandResult:
            try:
                return fn(host)
            except Exception as exc:  # one host's trouble never stops the others
                unreachable, message = _classify(exc)
                return CommandResult(host=host.name, error=message, unreachable=unreachable)

        workers = max(1, min(self.max_parallel, len(self.hosts)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jinad-fab-ssh") as pool:
            outcomes = list(pool.map(guarded, self.hosts))
        return GroupResult.of(outcomes)

    # ---- operations ----------------------------------------------------------------------------

    def run(self, command: str, *, on_output: OutputCallback | None = None,
            timeout: float | None = None) -> GroupResult[CommandResult]:
        """Run a shell command on every host."""

        def one(host: Host) -> CommandResult:
            streams: dict[str, Any] = {}
            writers: list[_LineWriter] = []
            if on_output is not None:
                writers = [_LineWriter(host.name, "out", on_output), _LineWriter(host.name, "err", on_output)]
                streams = {"out_stream": writers[0], "err_stream": writers[1]}
            kwargs = dict(hide=True, warn=True, in_stream=False, timeout=timeout or self.command_timeout, **streams)
            if host.connection == "local":
                result = _local_context().run(command, **kwargs)
            else:
                with self._connection(host) as conn:
                    result = conn.run(command, **kwargs)
            for w in writers:
                w.flush()
            return CommandResult(host=host.name, exit_code=result.exited, stdout=result.stdout, stderr=result.stderr)

        return self._each(one)

    def put(self, local: str | pathlib.Path, remote: str, *, mode: int | None = None,
            on_progress: Callable[[str, int, int], None] | None = None) -> GroupResult[CommandResult]:
        """Copy one local file to ``remote`` on every host (a path ending in ``/`` is a folder).

        ``on_progress(host, sent, total)`` follows each host's bytes as they are written (called
        from the worker threads). Without ``mode`` the file keeps its local mode, as with ``scp -p``.
        """
        local = pathlib.Path(local)
        if not local.is_file():
            raise BadInput(f"{local} is not a file")
        target = remote + local.name if remote.endswith("/") else remote
        file_mode = mode if mode is not None else stat.S_IMODE(local.stat().st_mode)

        def one(host: Host) -> CommandResult:
            report = (lambda sent, total: on_progress(host.name, sent, total)) if on_progress else None
            if host.connection == "local":
                dest = pathlib.Path(target).expanduser()
                dest.parent.mkdir(parents=True, exist_ok=True)
                _copy_with_progress(local, dest, report)
                if mode is not None:
                    dest.chmod(mode)
            else:
                with self._connection(host) as conn:
                    parent = str(pathlib.PurePosixPath(target).parent)
                    conn.run(f"mkdir -p {shlex.quote(parent)}", hide=True, warn=False, in_stream=False)
                    # paramiko's SFTP put directly, for its per-chunk callback (Fabric's put has none)
                    sftp = conn.sftp()
                    sftp.put(str(local), target, callback=report)
                    sftp.chmod(target, file_mode)
            return CommandResult(host=host.name, exit_code=0, stdout=f"{local} -> {target}")

        return self._each(one)


def _copy_with_progress(src: pathlib.Path, dest: pathlib.Path,
                        report: Callable[[int, int], None] | None, chunk: int = 1 << 20) -> None:
    total = src.stat().st_size
    sent = 0
    with src.open("rb") as fin, dest.open("wb") as fout:
        while block := fin.read(chunk):
            fout.write(block)
            sent += len(block)
            if report is not None:
                report(sent, total)
    shutil.copymode(src, dest)
    if report is not None and total == 0:
        report(0, 0)


def _local_context() -> Any:
    """An invoke Context whose runner closes the child's pipes when it is done (invoke leaves them open)."""
    import invoke

    class _Local(invoke.Local):
        def stop(self) -> None:
            super().stop()
            process = getattr(self, "process", None)
            for pipe in (getattr(process, "stdin", None), getattr(process, "stdout", None),
                         getattr(process, "stderr", None)):
                if pipe is not None:
                    pipe.close()

    return invoke.Context(config=invoke.Config(overrides={"runners": {"local": _Local}}))


def tail_command(path: str, lines: int = 50, follow: bool = False) -> str:
    """The shell command that prints (and with ``follow`` keeps printing) a log file's tail."""
    if lines < 0:
        raise BadInput("lines must not be negative")
    flag = "-F " if follow else ""
    return f"tail -n {int(lines)} {flag}-- {shlex.quote(path)}"

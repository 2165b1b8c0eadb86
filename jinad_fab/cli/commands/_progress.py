"""Live progress for long transfers, drawn on stderr when it is a terminal and left out otherwise
(CI logs and pipes get the result alone): one byte bar for an upload to a daemon, one per host for
a copy over SSH."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ._common import err_console

if TYPE_CHECKING:
    from rich.progress import Progress

UploadProgress = Callable[[int, int], None]
HostProgress = Callable[[str, int, int], None]


def _bytes_progress() -> Progress | None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    err = err_console()
    if not err.is_terminal:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), DownloadColumn(binary_units=True),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=err)


@contextlib.contextmanager
def upload_bar(label: str) -> Iterator[UploadProgress | None]:
    """``on_progress(sent, total)`` for one upload, or None when stderr is not a terminal."""
    progress = _bytes_progress()
    if progress is None:
        yield None
        return
    task = progress.add_task(label, total=None)

    def on_progress(sent: int, total: int) -> None:
        progress.update(task, completed=sent, total=total)

    with progress:
        yield on_progress


@contextlib.contextmanager
def host_bars(hosts: Sequence[str], total: int) -> Iterator[HostProgress | None]:
    """``on_progress(host, sent, total)`` with a bar per host, or None when stderr is not a terminal."""
    progress = _bytes_progress()
    if progress is None:
        yield None
        return
    tasks = {host: progress.add_task(host, total=total) for host in hosts}

    def on_progress(host: str, sent: int, size: int) -> None:
        progress.update(tasks[host], completed=sent, total=size)

    with progress:
        yield on_progress


def stream_build(workspace, where: str) -> None:
    """Print a workspace's build log to stderr as the daemon writes it (as `docker build` shows its
    steps); returns when the build is over, whatever its outcome (the caller waits for ACTIVE)."""
    err = err_console()
    err.print(f"building workspace {workspace.id} on {where}", markup=False)
    for entry in workspace.logs(follow=True):
        err.print(f"  build | {entry.get('msg') or entry.get('message') or entry}", markup=False,
                  highlight=False, style="dim")

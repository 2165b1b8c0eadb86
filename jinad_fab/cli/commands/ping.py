"""`jinad-fab ping HOST[:PORT]`: is a jinad there, and how far away is it."""

from __future__ import annotations

import statistics
import time

import click

from ...errors import EXIT_FAILED, DaemonUnreachable, HostsUnreachable, JinadFabError
from ...remote import DaemonAddress
from ._daemon import ADDRESS, ca_file_option, daemon, token_options


@click.command("ping")
@click.argument("host", type=ADDRESS)
@click.option("-c", "--count", type=click.IntRange(1, 10_000), default=3, show_default=True)
@click.option("--interval", type=click.FloatRange(0), default=0.2, show_default=True, help="seconds between pings")
@click.option("--timeout", type=click.FloatRange(0.01), default=3.0, show_default=True)
@token_options
@ca_file_option
def command(host: DaemonAddress, count: int, interval: float, timeout: float, token: str | None) -> None:
    """Send COUNT health requests to the jinad on HOST and print each round trip and the average."""
    times: list[float] = []
    failed = 0
    with daemon(host, token, timeout=timeout) as d:
        for i in range(count):
            t0 = time.perf_counter()
            try:
                info = d.alive()
            except DaemonUnreachable as exc:
                failed += 1
                click.echo(f"ping {i + 1}: {d.name} unreachable ({exc})")
            except JinadFabError as exc:
                failed += 1
                click.echo(f"ping {i + 1}: {d.name} answered with an error: {exc}")
            else:
                ms = (time.perf_counter() - t0) * 1000
                times.append(ms)
                click.echo(f"ping {i + 1}: {d.name} jinad {info.get('version', '?')} "
                           f"(daemon {str(info.get('daemon_id', info.get('id', '?')))[:12]}) {ms:.2f} ms")
            if i + 1 < count:
                time.sleep(interval)
    if times:
        click.echo(f"{len(times)} of {count} answered; round trip avg {statistics.mean(times):.2f} ms, "
                   f"min {min(times):.2f} ms, max {max(times):.2f} ms")
    if not times:
        raise HostsUnreachable(f"{host}: no answer to {count} ping(s)")
    if failed:
        raise click.exceptions.Exit(EXIT_FAILED)  # some pings failed

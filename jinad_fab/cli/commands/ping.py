"""`jinad-fab ping HOST[:PORT]`: is a jinad there, and how far away is it."""

from __future__ import annotations

import statistics
import time

import click

from ...errors import EXIT_FAILED, DaemonUnreachable, HostsUnreachable, JinadFabError
from ...remote import DaemonAddress
from ._common import examples, json_option, print_json
from ._daemon import ADDRESS, ca_file_option, daemon, token_options


@examples(
    "jinad-fab ping gpu1                # port 8000",
    "jinad-fab ping gpu1:8100 -c 10 --interval 0",
    "jinad-fab ping gpu1 --json | jq .avg_ms",
)
@click.command("ping")
@click.argument("host", type=ADDRESS)
@click.option("-c", "--count", type=click.IntRange(1, 10_000), default=3, show_default=True)
@click.option("--interval", type=click.FloatRange(0), default=0.2, show_default=True, help="seconds between pings")
@click.option("--timeout", type=click.FloatRange(0.01), default=3.0, show_default=True)
@token_options
@ca_file_option
@json_option
def command(host: DaemonAddress, count: int, interval: float, timeout: float, token: str | None,
            as_json: bool) -> None:
    """Send COUNT health requests to the jinad on HOST and print each round trip and the average.

    Exit 0 when every ping was answered, 2 when some were not, 4 when none was.
    """
    times: list[float] = []
    pings: list[dict] = []
    info: dict = {}
    with daemon(host, token, timeout=timeout) as d:
        for i in range(count):
            t0 = time.perf_counter()
            try:
                info = d.alive()
            except DaemonUnreachable as exc:
                pings.append({"seq": i + 1, "ok": False, "unreachable": True, "error": str(exc)})
                if not as_json:
                    click.echo(f"ping {i + 1}: {d.name} unreachable ({exc})")
            except JinadFabError as exc:
                pings.append({"seq": i + 1, "ok": False, "unreachable": False, "error": str(exc)})
                if not as_json:
                    click.echo(f"ping {i + 1}: {d.name} answered with an error: {exc}")
            else:
                ms = (time.perf_counter() - t0) * 1000
                times.append(ms)
                pings.append({"seq": i + 1, "ok": True, "ms": round(ms, 3)})
                if not as_json:
                    click.echo(f"ping {i + 1}: {d.name} jinad {info.get('version', '?')} "
                               f"(daemon {str(info.get('daemon_id', info.get('id', '?')))[:12]}) {ms:.2f} ms")
            if i + 1 < count:
                time.sleep(interval)
    if as_json:
        print_json({
            "host": d.name, "sent": count, "answered": len(times),
            "version": info.get("version"), "daemon_id": info.get("daemon_id", info.get("id")),
            "avg_ms": round(statistics.mean(times), 3) if times else None,
            "min_ms": round(min(times), 3) if times else None,
            "max_ms": round(max(times), 3) if times else None,
            "pings": pings,
        })
    elif times:
        click.echo(f"{len(times)} of {count} answered; round trip avg {statistics.mean(times):.2f} ms, "
                   f"min {min(times):.2f} ms, max {max(times):.2f} ms")
    if not times:
        raise HostsUnreachable(f"{host}: no answer to {count} ping(s)")
    if len(times) < count:
        raise click.exceptions.Exit(EXIT_FAILED)  # some pings failed

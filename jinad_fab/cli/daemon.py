"""`jinad`: the per-host REST daemon. Reads flags (and ``JINAD_*`` through the settings) at the edge."""

from __future__ import annotations

import sys

import click

from ..errors import EXIT_FAILED
from .exits import Command


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default=None, help="bind address [127.0.0.1]; non-loopback needs --token")
@click.option("--port", default=None, type=int, help="bind port [8000]")
@click.option("--home", default=None, type=click.Path(file_okay=False), help="state directory [~/.jinad]")
@click.option("--token", default=None, help="bearer token clients must send (or JINAD_TOKEN)")
@click.option("--advertise-host", default=None, help="address clients use to reach gateways and pods")
@click.option("--runtime", default=None, type=click.Choice(["process", "docker"]), help="default runtime")
@click.option("--tls-certfile", default=None, type=click.Path(dir_okay=False), help="serve HTTPS with this PEM certificate")
@click.option("--tls-keyfile", default=None, type=click.Path(dir_okay=False), help="the certificate's PEM private key")
@click.option("--max-upload-bytes", default=None, type=int)
@click.option("--max-files", default=None, type=int)
@click.option("--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def cli(log_level: str, **flags: object) -> None:
    """Serve the jinad REST API (workspaces, Flows, Pods, Peas, logs) on this host."""
    import uvicorn
    from pydantic import ValidationError

    from ..daemon.app import create_app
    from ..daemon.settings import DaemonSettings

    try:
        settings = DaemonSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        msgs = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise click.UsageError(msgs) from None
    settings.home.mkdir(parents=True, exist_ok=True)
    tls = {}
    if settings.tls_certfile is not None:
        tls = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)}
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level=log_level,
                            access_log=False, timeout_graceful_shutdown=5, **tls)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn ends a failed start (a taken port...) with its own code
        if exc.code not in (0, None):
            sys.exit(EXIT_FAILED)
        raise
    if not server.started:  # uvicorn has said why
        sys.exit(EXIT_FAILED)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="jinad")


if __name__ == "__main__":
    main()

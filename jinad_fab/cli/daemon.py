"""`jinad`: the per-host REST daemon. Reads flags (and ``JINAD_*`` through the settings) at the edge."""

from __future__ import annotations

import socket
import sys

import click

from ..errors import EXIT_FAILED
from .exits import Command


def _refuse_token_in_argv(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.BadParameter("a token in argv is visible to every local user (ps); "
                                 "use --token-file PATH or the JINAD_TOKEN environment variable")


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts: a taken port fails here (exit 2), before
    recovery touches anything and before "startup complete"."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host in ("::", ""):
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno in (98, 48) else f"cannot be bound: {exc.strerror or exc}"
        click.echo(f"Error: port {port} on {host} {reason}; choose another with --port", err=True)
        sys.exit(EXIT_FAILED)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jinad-fab", prog_name="jinad")
@click.option("--host", default=None, help="bind address [127.0.0.1]; non-loopback needs --token-file")
@click.option("--port", default=None, type=int, help="bind port [8000]")
@click.option("--home", default=None, type=click.Path(file_okay=False), help="state directory [~/.jinad]")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False),
              help="file holding the bearer token (or JINAD_TOKEN) [<home>/token, created 0600 on first start]")
@click.option("--token", "argv_token", default=None, hidden=True, expose_value=False,
              callback=_refuse_token_in_argv)
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="also answer to this Host header (repeatable; '*' for any)")
@click.option("--allowed-origin", "allowed_origins", multiple=True,
              help="let a browser page on this origin (scheme://host[:port]) call the API (repeatable)")
@click.option("--advertise-host", default=None, help="address clients use to reach gateways and pods")
@click.option("--runtime", default=None, type=click.Choice(["process", "docker"]), help="default runtime")
@click.option("--tls-certfile", default=None, type=click.Path(dir_okay=False), help="serve HTTPS with this PEM certificate")
@click.option("--tls-keyfile", default=None, type=click.Path(dir_okay=False), help="the certificate's PEM private key")
@click.option("--max-upload-bytes", default=None, type=int)
@click.option("--max-files", default=None, type=int)
@click.option("--max-connections", default=None, type=int, help="concurrent connections; 503 past it [1024]")
@click.option("--header-timeout", default=None, type=float,
              help="seconds a client may take to send a request's headers [10]")
@click.option("--keep-alive-timeout", default=None, type=float, help="seconds an idle connection stays open [5]")
@click.option("--peer", "peers", multiple=True, metavar="ADDRESS=TOKEN_FILE",
              help="another daemon this one's Flows may start Pods on, and the file holding its token (repeatable)")
@click.option("--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def cli(log_level: str, **flags: object) -> None:
    """Serve the jinad REST API (workspaces, Flows, Pods, Peas, logs) on this host.

    Every request but GET /alive needs the bearer token; without --token-file or JINAD_TOKEN the
    daemon uses <home>/token (written on first start). Local jinad-fab commands read it there."""
    import uvicorn
    from pydantic import ValidationError

    from ..daemon.app import create_app, prepare_home
    from ..daemon.settings import DaemonSettings
    from ..tokens import TokenFileError

    flags = {k: v for k, v in flags.items() if v is not None and v != ()}
    if "peers" in flags:
        pairs = [str(p).partition("=") for p in flags["peers"]]  # type: ignore[union-attr]
        bad = [a for a, eq, f in pairs if not (a and eq and f)]
        if bad:
            raise click.UsageError(f"--peer takes ADDRESS=TOKEN_FILE, not {bad[0]!r}")
        flags["peers"] = {a: f for a, _, f in pairs}
    try:
        settings = DaemonSettings(**flags)
    except ValidationError as exc:
        msgs = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise click.UsageError(msgs) from None
    try:
        prepare_home(settings)  # a token file that cannot be used is a usage error, before binding
    except TokenFileError as exc:
        raise click.UsageError(str(exc)) from None
    sock = bind_socket(settings.host, settings.port)
    app = create_app(settings)
    tls = {}
    if settings.tls_certfile is not None:
        tls = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)}
    from ..daemon.connections import header_timeout_protocol

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                            access_log=False, timeout_graceful_shutdown=5,
                            http=header_timeout_protocol(settings.header_timeout),
                            limit_concurrency=settings.max_connections,
                            timeout_keep_alive=settings.keep_alive_timeout, **tls)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:  # uvicorn ends a failed start with its own code
        if exc.code not in (0, None):
            sys.exit(EXIT_FAILED)
        raise
    if not server.started:  # uvicorn has said why
        sys.exit(EXIT_FAILED)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="jinad")


if __name__ == "__main__":
    main()

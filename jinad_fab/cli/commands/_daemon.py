"""Options shared by the commands that talk to one host's `jinad`.

``--host`` is parsed by :class:`~jinad_fab.remote.DaemonAddress` while Click reads the command
line, so ``http://h:p`` and ``https://h:p`` work and a port out of range is a usage error
(exit 1) before any connection is tried. The token comes from ``--token-file``, else from
:func:`local_token` (``JINAD_TOKEN``, ``JINAD_TOKEN_FILE``, or the file a daemon on this machine wrote
to its home). A token in argv (``--token``) is refused: ``ps`` shows argv to every local user.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import click

from ...errors import BadAddress
from ...remote import DaemonAddress, DaemonClient
from ...tokens import TokenFileError, find_token, read_token_file

_CA_FILE = "jinad_fab.ca_file"


class AddressType(click.ParamType):
    """HOST[:PORT] or http(s)://HOST[:PORT] -> DaemonAddress; a bad one is a usage error."""

    name = "HOST[:PORT]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> DaemonAddress:
        if isinstance(value, DaemonAddress):
            return value
        try:
            return DaemonAddress.parse(value)
        except BadAddress as exc:
            self.fail(exc.reason if value else "empty address", param, ctx)


ADDRESS = AddressType()


def _keep_ca_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_CA_FILE] = value


def ca_file_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--ca-file``: kept in the context for :func:`daemon` (so commands need no extra argument)."""
    return click.option("--ca-file", envvar="JINAD_CA_FILE", show_envvar=True, expose_value=False,
                        callback=_keep_ca_file, type=click.Path(dir_okay=False, exists=True),
                        help="CA bundle to check an https:// daemon's certificate with")(fn)


def _refuse_token_in_argv(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.BadParameter("a token in argv is visible to every local user (ps); "
                                 "use --token-file PATH or the JINAD_TOKEN environment variable")


def _read_token_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return read_token_file(pathlib.Path(value), private=False)
    except TokenFileError as exc:
        raise click.BadParameter(str(exc)) from None


def token_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--token-file`` (passed on as ``token``); ``--token`` in argv is refused."""
    fn = click.option("--token", "argv_token", hidden=True, expose_value=False,
                      callback=_refuse_token_in_argv)(fn)
    return click.option("--token-file", "token", default=None, type=click.Path(dir_okay=False),
                        callback=_read_token_file,
                        help="file holding the daemon's token [JINAD_TOKEN, else ~/.jinad/token for a local "
                             "daemon]")(fn)


def host_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = ca_file_option(fn)
    fn = token_options(fn)
    return click.option("--host", "host", required=True, type=ADDRESS, metavar="HOST[:PORT]",
                        help="the jinad daemon: gpu1:8000, https://gpu1:8443 (port 8000 when left out)")(fn)


def local_token(address: DaemonAddress) -> str | None:
    """``JINAD_TOKEN``, ``JINAD_TOKEN_FILE``, else the token a daemon on this machine wrote to
    ``<home>/token`` (``$JINAD_HOME``, else ``~/.jinad``), the latter only for a loopback address:
    a token of this machine is never sent to another one."""
    try:
        return find_token(address.host)
    except TokenFileError as exc:
        raise click.UsageError(str(exc)) from None


def daemon(host: str | DaemonAddress, token: str | None, timeout: float = 30.0) -> DaemonClient:
    """The client for ``--host``, with ``--ca-file`` when the command line gave one."""
    ctx = click.get_current_context(silent=True)
    ca_file = ctx.meta.get(_CA_FILE) if ctx is not None else None
    return DaemonClient.from_address(host, token or local_token, ca_file=ca_file, timeout=timeout)

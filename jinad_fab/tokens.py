"""The daemon's bearer token on disk: written once by ``jinad`` and found again by local tools.

A daemon started without a token writes a random one to ``<home>/token`` (mode 0600), like
Jupyter. Tools on the same machine (``jinad-fab``, a Flow's remote Pods) find it there, or take
``--token-file`` / ``JINAD_TOKEN``; a token never travels in argv. The default home's token is only
sent to a loopback daemon: it belongs to this machine's daemon, not to another host's.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import secrets
import stat

TOKEN_ENV = "JINAD_TOKEN"
TOKEN_FILE_ENV = "JINAD_TOKEN_FILE"
HOME_ENV = "JINAD_HOME"
TOKEN_NAME = "token"


class TokenFileError(ValueError):
    """A token file that cannot be used (missing, empty, or readable by other users)."""


def default_home() -> pathlib.Path:
    return pathlib.Path(os.environ.get(HOME_ENV) or pathlib.Path.home() / ".jinad")


def is_loopback_name(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: pathlib.Path, *, private: bool = True) -> str:
    """The token in ``path``; with ``private`` refuse a file other users can read."""
    try:
        st = path.stat()
        text = path.read_text().strip()
    except FileNotFoundError:
        raise TokenFileError(f"token file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise TokenFileError(f"cannot read token file {str(path)!r}: {exc.strerror or exc}") from None
    if private and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenFileError(f"token file {str(path)!r} is readable by other users "
                             f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 on it")
    if not text:
        raise TokenFileError(f"token file {str(path)!r} is empty")
    return text


def ensure_token_file(path: pathlib.Path) -> str:
    """The token in ``path``, creating it (random, 0600, never overwritten) when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token_file(path)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def write_token_file(path: pathlib.Path, token: str) -> None:
    """Replace the token in ``path`` atomically (a reader sees the old token or the new one), 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def find_token(host: str | None = None, *, token_file: str | os.PathLike | None = None) -> str | None:
    """The token a local tool sends to the daemon at ``host``.

    In order: ``token_file``, ``$JINAD_TOKEN``, ``$JINAD_TOKEN_FILE``, then, for a loopback host
    only, ``<default home>/token`` (``$JINAD_HOME`` or ``~/.jinad``). None when there is none.
    """
    if token_file:
        return read_token_file(pathlib.Path(token_file), private=False)
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_FILE_ENV):
        return read_token_file(pathlib.Path(os.environ[TOKEN_FILE_ENV]), private=False)
    if host is None or is_loopback_name(host):
        path = default_home() / TOKEN_NAME
        if path.is_file():
            try:
                return read_token_file(path, private=False)
            except TokenFileError:
                return None
    return None

"""Daemon configuration. The only place in the daemon that reads the environment (``JINAD_*``)."""

from __future__ import annotations

import ipaddress
import pathlib

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DaemonSettings(BaseSettings):
    """Everything ``create_app`` needs; built by the ``jinad`` CLI or directly in tests."""

    model_config = SettingsConfigDict(env_prefix="JINAD_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    home: pathlib.Path = Field(default_factory=lambda: pathlib.Path.home() / ".jinad")
    token: SecretStr | None = Field(None, description="bearer token (JINAD_TOKEN); prefer token_file")
    token_file: pathlib.Path | None = Field(
        None, description="file holding the bearer token [<home>/token, written 0600 on first start]"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values accepted besides the bind address, localhost, 127.0.0.1 and [::1]; '*' any",
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="browser origins (scheme://host[:port]) allowed to call the API"
    )
    advertise_host: str | None = Field(
        None, description="address clients should use for gateways/pods; defaults to the bind host"
    )

    peers: dict[str, pathlib.Path] = Field(
        default_factory=dict,
        description="other daemons' tokens for Flows with remote Pods: address (gpu1:8000) -> file holding its token",
    )
    runtime: str = Field("process", description="default runtime for new workspaces")
    tls_certfile: pathlib.Path | None = Field(None, description="serve HTTPS with this certificate (PEM)")
    tls_keyfile: pathlib.Path | None = Field(None, description="the certificate's private key (PEM)")
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    max_files: int = Field(1000, ge=1)
    max_extract_bytes: int = Field(1024 * 1024 * 1024, ge=1, description="bound on unpacked archives")
    max_extract_ratio: float = Field(200.0, gt=1, description="unpacked/packed size bound per archive")
    max_connections: int = Field(1024, ge=1, description="concurrent connections and requests; 503 past it")
    keep_alive_timeout: float = Field(5.0, gt=0, description="seconds an idle keep-alive connection stays open")
    header_timeout: float = Field(10.0, gt=0, description="seconds a connection may take to send a request's headers")
    build_workers: int = Field(2, ge=1)
    max_queued_builds: int = Field(16, ge=1)
    build_timeout: float = Field(1800.0, gt=0)
    start_timeout: float = Field(60.0, gt=0, description="seconds for a Flow/Pod/Pea to report ready")
    stop_timeout: float = Field(10.0, gt=0)
    reconcile_interval: float = Field(5.0, gt=0)
    log_max_bytes: int = Field(20 * 1024 * 1024, ge=4096, description="an object's log rotates past this size")
    log_backups: int = Field(3, ge=1, le=100, description="rotated copies kept of each object's log")
    pip_index_args: list[str] = Field(default_factory=list, description="extra pip args, e.g. --no-index")

    # The docker runtime (runtimes/docker.py).
    docker_host: str | None = Field(None, description="Docker engine address [unix:///var/run/docker.sock]")
    docker_base_image: str | None = Field(
        None, description="FROM of workspace images [python:<.jinad python>-slim]; needs python3 -m venv and useradd"
    )
    docker_publish_host: str | None = Field(
        None, description="host address container ports are published on [the daemon's bind address]"
    )
    docker_wheelhouse: bool = Field(True, description="install into images from a wheelhouse built on the host")
    docker_cpus: float | None = Field(None, gt=0, description="CPU limit per container")
    docker_memory: str | None = Field(None, pattern=r"^[0-9]+[bkmg]?$", description="memory limit, e.g. 2g")
    docker_cache_max_age: float = Field(7 * 24 * 3600.0, ge=0, description=(
        "seconds the build cache a deleted workspace left (its venv with the installed wheels) is kept"))
    docker_cache_max_bytes: int = Field(10 * 1024**3, ge=0, description=(
        "cached layers no image uses are pruned, oldest first, while together over this size"))

    @model_validator(mode="after")
    def _tls_pair(self) -> DaemonSettings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("TLS needs both a certificate and its key (--tls-certfile and --tls-keyfile)")
        for path in (self.tls_certfile, self.tls_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {str(path)!r} does not exist")
        return self

    @model_validator(mode="after")
    def _token_for_public_bind(self) -> DaemonSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give the token once: a token or a token file, not both")
        explicit = (self.token and self.token.get_secret_value()) or self.token_file
        if not is_loopback(self.host) and not explicit:
            raise ValueError(f"refusing to bind {self.host} (not loopback) without a token "
                             "(--token-file or JINAD_TOKEN)")
        return self

    def resolve_token(self) -> str:
        """The token every request must carry: the one given, the token file's, or ``<home>/token``
        (created once, 0600). Raises ``TokenFileError`` for an unusable file."""
        from ..tokens import TOKEN_NAME, ensure_token_file, read_token_file

        if self.token is not None and self.token.get_secret_value():
            return self.token.get_secret_value()
        if self.token_file is not None:
            return read_token_file(self.token_file)
        return ensure_token_file(self.home / TOKEN_NAME)

    def token_path(self) -> pathlib.Path | None:
        """The file the token is read from at start (and a rotated token is written to); None when
        it comes from ``JINAD_TOKEN``, which the daemon cannot change."""
        from ..tokens import TOKEN_NAME

        if self.token is not None and self.token.get_secret_value():
            return None
        return self.token_file if self.token_file is not None else self.home / TOKEN_NAME

    def child_environment(self) -> dict[str, str]:
        """The environment objects start with: the daemon's own, minus every ``JINAD_*`` setting
        (the token must never reach user code)."""
        import os

        return {k: v for k, v in os.environ.items() if not k.upper().startswith("JINAD_")}

    @property
    def public_host(self) -> str:
        if self.advertise_host:
            return self.advertise_host
        if self.host in ("0.0.0.0", "::", ""):
            import socket

            return socket.getfqdn()
        return self.host

    @property
    def bind_host_for_objects(self) -> str:
        """Where gateways and pods bind: the daemon's own bind address."""
        return self.host or "127.0.0.1"

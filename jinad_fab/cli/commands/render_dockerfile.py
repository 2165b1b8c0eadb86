"""`jinad-fab render dockerfile DIR`: the Dockerfile the jinad docker runtime would build for DIR."""

from __future__ import annotations

import importlib.metadata
import pathlib

import click

from ... import jinadfile, templating
from ._common import examples


@examples(
    "jinad-fab render dockerfile                 # the workspace in this folder",
    "jinad-fab render dockerfile ./ws --base-image python:3.11-slim --no-wheelhouse",
)
@click.command("dockerfile")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path), default=".")
@click.option("--base-image", envvar="JINAD_DOCKER_BASE_IMAGE", default=None, show_envvar=True,
              help="FROM of the image, as the daemon's docker_base_image [python:<.jinad python>-slim]")
@click.option("--wheelhouse/--no-wheelhouse", envvar="JINAD_DOCKER_WHEELHOUSE", default=True, show_default=True,
              help="install from a wheelhouse built on the host (the daemon's docker_wheelhouse)")
def command(directory: pathlib.Path, base_image: str | None, wheelhouse: bool) -> None:
    """Print the Dockerfile a docker-runtime jinad builds for the workspace in DIRECTORY.

    It is rendered from the workspace's `.jinad` and `requirements.txt` exactly as the daemon
    renders it. A `.jinad` naming its own `dockerfile` gets that file printed unchanged.
    """
    config = jinadfile.load(directory)
    if config.dockerfile:
        path = directory / config.dockerfile
        if not path.is_file():
            raise click.ClickException(f".jinad names dockerfile {config.dockerfile!r}, which is not in {directory}")
        click.echo(path.read_text(encoding="utf-8"), nl=False)
        return
    requirements = jinadfile.read_requirements(directory, config)
    text = templating.render_dockerfile(
        config, version=importlib.metadata.version("jinad-fab"), base_image=base_image,
        has_requirements=bool(requirements), wheelhouse=wheelhouse,
    )
    click.echo(text, nl=False)

"""`jinad-fab pod`: start one Pod on a host through its daemon and follow its log."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import UnionType
from typing import Any, Union, get_args, get_origin

import click
import yaml
from pydantic.fields import FieldInfo

from ...errors import BadConfig, JinadFabError
from ...flow.remote_pods import PodFiles
from ...flow.spec import PodOptions, parse
from ...remote import Workspace
from ...spec import names as spec_names
from ._common import examples, json_option, print_ndjson
from ._daemon import daemon, host_options
from ._progress import stream_build, upload_bar


class _Value(click.ParamType):
    """An option value read as YAML flow text: ``2``, ``0,2``, ``any``, ``{"dim": 64}``, ``[0, 2]``."""

    name = "value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError as exc:
            self.fail(f"cannot read {value!r}: {exc}", param, ctx)


def _click_type(info: FieldInfo) -> click.ParamType:
    bounds = {k: getattr(m, k) for m in info.metadata for k in ("ge", "le") if getattr(m, k, None) is not None}
    members = [a for a in get_args(info.annotation) if a is not type(None)] if get_origin(info.annotation) in (
        Union, UnionType) else [info.annotation]
    plain = members[0] if len(members) == 1 else None  # `float | None` is a float option
    if plain is int:
        return click.IntRange(bounds.get("ge"), bounds.get("le"))
    if plain is float:
        return click.FLOAT
    if plain is str:
        return click.STRING
    return _Value()


def spec_options(model: type[PodOptions], defaults: dict[str, Any]) -> Callable[[Callable], Callable]:
    """One command-line option per spec field (``--uses-with``, ``--parallel`` or ``--replicas``, ...),
    its help the field's description: an option added to the spec appears here by itself."""

    def decorate(fn: Callable) -> Callable:
        for field, info in reversed(model.model_fields.items()):
            flags = [f"--{n.replace('_', '-')}" for n in names_of(model, field)]
            if get_origin(info.annotation) in (list,) or (field == "py_modules"):
                opt = click.option(*flags, field, multiple=True, help=f"{info.description} (repeatable)")
            else:
                default = defaults.get(field, info.default)
                opt = click.option(*flags, field, type=_click_type(info), default=default,
                                   show_default=default is not None, help=info.description)
            fn = opt(fn)
        return fn

    return decorate


def names_of(model: type[PodOptions], field: str) -> list[str]:
    return [k for k, f in spec_names(model).items() if f == field]


@examples(
    "jinad-fab pod --host gpu1 --uses _index --shards 2          # follow its log, Ctrl-C removes it",
    "jinad-fab pod --host gpu1 --uses Encoder --py-modules enc.py --uses-with '{\"dim\": 64}' --detach",
    "jinad-fab pod --host gpu1 --uses _pass --detach --json | jq -r .id",
)
@click.command("pod")
@host_options
@click.option("--name", default="pod", show_default=True, help="the Pod's name on the host")
@spec_options(PodOptions, defaults={"uses": "_logforward"})  # a Pod on its own logs what reaches it
@click.option("--upload", "uploads", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="one more file for the workspace (repeatable)")
@click.option("--detach", is_flag=True, help="leave the Pod running and print its ids instead of following it")
@json_option
def command(host: str, token: str | None, name: str, uploads: tuple[str, ...], detach: bool, as_json: bool,
            **options: Any) -> None:
    """Start a Pod on HOST; print its addresses; follow its log until Ctrl-C, then remove it.

    With --json the Pod is printed as one JSON line, then each log line as one JSON object.

    Every Pod option of Flow.add is an option here, e.g. --parallel 2 --uses-with '{"dim": 64}'.
    """
    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()
             if v is not None and v != ()}
    try:
        spec = parse(PodOptions, given, f"Pod {name!r}")
    except BadConfig as exc:
        raise click.UsageError(str(exc)) from exc
    files = PodFiles(os.getcwd())
    uses_in_ws, mods = files.add_executor(spec.uses, list(spec.py_modules or []), list(uploads), f"Pod {name!r}")
    body = {**spec.model_dump(exclude_none=True), "name": name, "uses": uses_in_ws, "py_modules": mods}
    with daemon(host, token) as d:
        with upload_bar(f"uploading to {d.name}") as on_progress:  # live bytes on a terminal only
            workspace = Workspace.create(d, files.payload(), on_progress=on_progress)
        ws = workspace.body
        pod = None
        try:
            stream_build(workspace, d.name)
            workspace.reload().wait_active()
            pod = workspace.start_pod(body).body
            if as_json:
                print_ndjson(pod)
            else:
                click.echo(f"{pod['id']} {pod['state']} on {d.name} (workspace {ws['id']})")
                click.echo(f"  in: {', '.join(pod.get('in_addresses') or [])}")
                click.echo(f"  ctrl: {pod.get('ctrl_address')}")
            if detach and as_json:
                pod = None
                return
            if detach:
                click.echo(f"remove it with: curl -X DELETE {d.base_url}/pods/{pod['id']}")
                pod = None
                return
            click.echo("following its log; Ctrl-C stops and removes it", err=True)
            try:
                for entry in d.logs(pod["id"], follow=True):
                    if as_json:
                        print_ndjson(entry)
                        continue
                    click.echo(f"{entry.get('source') or name}: {entry.get('msg') or entry.get('message')}")
            except KeyboardInterrupt:
                pass
        finally:
            if pod is not None:
                try:
                    d.delete_pod(pod["id"])
                    d.delete_workspace(ws["id"])
                except JinadFabError as exc:
                    click.echo(f"could not clean up on {d.name}: {exc}", err=True)
            elif not detach:
                d.delete_workspace(ws["id"])

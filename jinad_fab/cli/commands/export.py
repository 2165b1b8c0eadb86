"""`jinad-fab export compose|kubernetes FLOW -o DIR`: the Flow for an engine that runs containers itself.

`jinad-fab render compose|kubernetes FLOW` (in the render group) prints what would be written.
Both load the Flow as `jinad-fab` runs it, compute its static wiring
(:func:`jinad_fab.flow.static.plan`) and write it with :mod:`jinad_fab.deploy.export`.
"""

from __future__ import annotations

import pathlib
import shlex
from typing import Any

import click

from ._common import examples, json_option, print_json

ENGINE_FILES = {"compose": "compose.yaml"}


def _load(flow_file: pathlib.Path, engine: str, base_image: str | None,
          exclude: tuple[pathlib.Path, ...] = ()) -> tuple[dict[str, Any], Any, str]:
    from ...deploy import export
    from ...flow.static import plan
    from ...flow.yaml import dump_flow, load_flow

    flow = load_flow(str(flow_file))
    p = plan(flow, engine)
    # the Flow the containers read, written back as jinad-fab reads it: secrets (tokens) never go
    # into an export's files, which end up in a ConfigMap or beside a compose file
    text = dump_flow(flow)
    img = export.image(p["name"], flow_file.parent, base_image=base_image, exclude=exclude)
    return p, img, text


def launcher() -> Any:
    """What exported containers run: the launch program's ``static`` and ``probe``."""
    from ...deploy.export import FLOW_PATH, Launcher
    from ...launch.command import MODULE, launch_argv

    def run(role: str, replica: int | None) -> list[str]:
        return ["python", "-m", MODULE, *launch_argv("static", yaml=FLOW_PATH, role=role, replica=replica)]

    def probe(port: int) -> list[str]:
        return ["python", "-m", MODULE, *launch_argv("probe", address=f"tcp://127.0.0.1:{port}")]

    return Launcher(run=run, probe=probe)


def build(engine: str, flow_file: pathlib.Path, *, base_image: str | None, namespace: str | None = None,
          publish_host: str = "127.0.0.1", exclude: tuple[pathlib.Path, ...] = ()) -> dict[str, Any]:
    """Everything an export writes, except the image's build context: files, objects, image."""
    from ...deploy import export
    from ...safe_yaml import dumps

    p, img, text = _load(flow_file, engine, base_image, exclude)
    if engine == "compose":
        doc = export.compose(p, img, launcher(), publish_host=publish_host)
        files = {ENGINE_FILES["compose"]: dumps(doc), "flow.yml": text}
    else:
        doc = export.kubernetes(p, img, text, launcher(), namespace=namespace)
        files = export.kubernetes_files(doc, namespace)
    return {"plan": p, "image": img, "files": files, "objects": export.summary(engine, p, doc)}


def _options(fn):
    fn = click.option("--base-image", envvar="JINAD_DOCKER_BASE_IMAGE", default=None, show_envvar=True,
                      help="FROM of the image, as the daemon's docker_base_image [python:<.jinad python>-slim]")(fn)
    return fn


def _run_export(engine: str, flow_file: pathlib.Path, out: pathlib.Path, base_image: str | None,
                pip_args: str, namespace: str | None, publish_host: str, as_json: bool) -> None:
    from ...deploy import export
    from ...jinadfile import load

    out = out.resolve()
    result = build(engine, flow_file, base_image=base_image, namespace=namespace, publish_host=publish_host,
                   exclude=(out,))
    written = export.write(out, result["files"])
    click.echo(f"gathering the wheels of image {result['image'].tag} (binary wheels only)", err=True)
    export.write_image_context(out / "image", result["image"], python=load(flow_file.parent).python,
                               pip_args=shlex.split(pip_args or ""))
    if as_json:
        print_json({"engine": engine, "image": result["image"].tag, "directory": str(out),
                    "files": [p.relative_to(out).as_posix() for p in written] + ["image/"],
                    "objects": result["objects"]})
        return
    click.echo(f"wrote {len(written)} files and the image's build context (image/) to {out}")
    if engine == "compose":
        click.echo(f"next: cd {out} && docker-compose up -d --build")
    else:
        click.echo(f"next: docker build -t {result['image'].tag} {out / 'image'}, make the image "
                   f"available to the cluster's nodes, then kubectl apply -k {out}")


@examples(
    "jinad-fab export compose flow.yml -o deploy/compose && (cd deploy/compose && docker-compose up -d --build)",
    "jinad-fab export kubernetes flow.yml -o deploy/k8s --namespace search",
)
@click.group("export")
def command() -> None:
    """Write a Flow for Docker Compose or Kubernetes: same Flow YAML, same workspace image."""


@examples(
    "jinad-fab export compose flow.yml -o out",
    "jinad-fab export compose flow.yml -o out --publish-host 0.0.0.0   # the Gateway on every interface",
)
@command.command("compose")
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="the folder to write the compose project into")
@_options
@click.option("--publish-host", default="127.0.0.1", show_default=True,
              help="the host address the Gateway's ports are published on")
@click.option("--pip-args", default="",
              help="extra `pip download` arguments for the wheelhouse, e.g. '--no-index --find-links DIR'")
@json_option
def compose(flow_file: pathlib.Path, out: pathlib.Path, base_image: str | None, publish_host: str, pip_args: str,
            as_json: bool) -> None:
    """Write FLOW_FILE as a compose project: one service per group of Peas, the Gateway published."""
    _run_export("compose", flow_file, out, base_image, pip_args, None, publish_host, as_json)


@examples(
    "jinad-fab export kubernetes flow.yml -o k8s --namespace search && kubectl apply -k k8s",
)
@command.command("kubernetes")
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="the folder to write the manifests into")
@click.option("--namespace", default=None, help="the namespace of every object (and a Namespace object)")
@_options
@click.option("--pip-args", default="", help="extra `pip download` arguments for the wheelhouse")
@json_option
def kubernetes(flow_file: pathlib.Path, out: pathlib.Path, namespace: str | None, base_image: str | None,
               pip_args: str, as_json: bool) -> None:
    """Write FLOW_FILE as Kubernetes manifests with a kustomization.yaml."""
    _run_export("kubernetes", flow_file, out, base_image, pip_args, namespace, "127.0.0.1", as_json)


def render_command(engine: str) -> click.Command:
    """`jinad-fab render compose|kubernetes FLOW`: print what `export` would write, write nothing."""

    @examples(f"jinad-fab render {engine} flow.yml", f"jinad-fab render {engine} flow.yml --json")
    @click.command(engine)
    @click.argument("flow_file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
    @_options
    @json_option
    def render(flow_file: pathlib.Path, base_image: str | None, as_json: bool, **kw: Any) -> None:
        result = build(engine, flow_file, base_image=base_image, namespace=kw.get("namespace"),
                       publish_host=kw.get("publish_host") or "127.0.0.1")
        if as_json:
            print_json({"engine": engine, "image": result["image"].tag, "files": list(result["files"]),
                        "objects": result["objects"]})
            return
        for name, text in result["files"].items():
            if name == "flow.yml":
                continue
            click.echo(f"# --- {name}" if engine == "compose" else f"---\n# {name}")
            click.echo(text, nl=False)

    render.help = (f"Print what `jinad-fab export {engine}` would write for FLOW_FILE (nothing is written "
                   "and no wheel is fetched); --json lists the objects. A Flow the engine cannot run is "
                   "refused with every reason.")
    if engine == "kubernetes":
        render = click.option("--namespace", default=None, help="the namespace of every object")(render)
    else:
        render = click.option("--publish-host", default="127.0.0.1", show_default=True,
                              help="the host address the Gateway's ports are published on")(render)
    return render

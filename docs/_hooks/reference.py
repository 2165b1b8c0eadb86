"""MkDocs hook: pages generated at build time from the code, so the reference cannot drift.

- ``reference/rest-api.md`` and ``reference/openapi.json``: the daemon's OpenAPI document, taken
  from ``create_app(settings)`` (nothing is started: no server, no socket, no state on disk).
- ``reference/cli.md``: every ``jinad-fab`` and ``jinad`` command's ``--help``, from Click itself.
- ``reference/options.md``: every Pod and Flow option, from the spec models (``jinad_fab.spec``).
- ``assets/concepts.svg``: the concepts picture, drawn by ``jinad_fab.viz`` (built-in layout).

Only this build script reads the environment (through DaemonSettings, as the daemon would).
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import click
from mkdocs.structure.files import File, Files

_HTTP_METHODS = ("get", "post", "put", "patch", "delete")


# --------------------------------------------------------------------------- REST API
def openapi() -> dict[str, Any]:
    from jinad_fab.daemon.app import create_app
    from jinad_fab.daemon.settings import DaemonSettings

    with tempfile.TemporaryDirectory(prefix="jinad-docs-") as home:
        return create_app(DaemonSettings(home=home)).openapi()


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") if text not in (None, "") else ""


def _type(schema: dict[str, Any]) -> str:
    if not schema:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return " or ".join(_type(s) for s in schema[key])
    kind = schema.get("type", "object")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def _body_schema(content: dict[str, Any]) -> str:
    return "; ".join(f"`{mime}`: {_type(c.get('schema', {}))}" for mime, c in content.items())


def rest_api_markdown(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    out = [
        "# REST API",
        "",
        f"`jinad` {info.get('version', '')}: {info.get('description', '')}",
        "",
        "This page is generated from the daemon's own OpenAPI document when the docs are built "
        "(`create_app(settings).openapi()`), so it lists exactly what the daemon serves. A running "
        "daemon serves the same document at `/openapi.json` and an interactive page at `/docs`; "
        "the raw file is also here: [openapi.json](openapi.json).",
        "",
        "Every route but health needs `Authorization: Bearer <token>` (see [Security model](../security.md)). "
        "Errors are JSON `{\"detail\": ...}` with the status that names the problem.",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec.get("paths", {}).items():
        for method in _HTTP_METHODS:
            if method in item:
                op = item[method]
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    for tag, ops in by_tag.items():
        out += [f"## {tag}", ""]
        for method, path, op in ops:
            out += [f"### `{method.upper()} {path}`", ""]
            if op.get("summary"):
                out += [f"**{_cell(op['summary'])}**", ""]
            if op.get("description"):
                out += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
                for p in params:
                    out.append(f"| `{p['name']}` | {p.get('in', '')} | {_type(p.get('schema', {}))} | "
                               f"{'yes' if p.get('required') else 'no'} | {_cell(p.get('description'))} |")
                out.append("")
            body = op.get("requestBody")
            if body:
                out += [f"Request body{' (required)' if body.get('required') else ''}: "
                        f"{_body_schema(body.get('content', {}))}", ""]
            responses = op.get("responses", {})
            if responses:
                out += ["| status | meaning | body |", "|---|---|---|"]
                for status, r in responses.items():
                    out.append(f"| {status} | {_cell(r.get('description'))} | {_body_schema(r.get('content', {}))} |")
                out.append("")
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        out += ["## Schemas", ""]
        for name, schema in schemas.items():
            out += [f"### {name}", ""]
            if schema.get("description"):
                out += [_cell(schema["description"]), ""]
            props = schema.get("properties", {})
            if props:
                required = set(schema.get("required", []))
                out += ["| field | type | required | description |", "|---|---|---|---|"]
                for field, fs in props.items():
                    out.append(f"| `{field}` | {_type(fs)} | {'yes' if field in required else 'no'} | "
                               f"{_cell(fs.get('description') or fs.get('title'))} |")
                out.append("")
            elif "enum" in schema:
                out += [f"One of {_type(schema)}.", ""]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- CLI
def _walk(cmd: click.Command, path: list[str], parent: click.Context | None):
    ctx = click.Context(cmd, info_name=path[-1], parent=parent)
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], ctx)


def _command_section(path: list[str], cmd: click.Command, ctx: click.Context) -> list[str]:
    level = "#" * min(len(path) + 1, 4)
    short = cmd.get_short_help_str(limit=120)
    return [f"{level} `{' '.join(path)}`", "", short, "", "```text", cmd.get_help(ctx).rstrip(), "```", ""]


def cli_markdown() -> str:
    from jinad_fab.cli import daemon as jinad_cli
    from jinad_fab.cli import main as fab_cli

    fab_cli._register()  # the commands are added lazily, as `jinad-fab` itself does at start
    out = ["# CLI reference", "",
           "Generated from the Click commands when the docs are built: each block is exactly what "
           "`--help` prints. Exit codes: 0 fine, 1 usage, 2 failed (bad input, a host failed), "
           "4 unreachable.", ""]
    for root, name in ((fab_cli.cli, "jinad-fab"), (jinad_cli.cli, "jinad")):
        for path, cmd, ctx in _walk(root, [name], None):
            out += _command_section(path, cmd, ctx)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- concepts picture
def concepts_svg() -> str:
    from jinad_fab.viz import Graph, render_svg

    g = Graph("concepts", direction="TB")
    g.node("client", "Client", "Flow.index / .search", shape="ellipse", fill="#ffe7b3")
    g.node("gateway", "Gateway", "ZeroMQ and HTTP/JSON", shape="ellipse", fill="#ffe7b3")
    g.cluster("enc", 'Pod "encoder" (parallel=2)', "on Host gpu-1: a jinad Workspace, docker Runtime")
    for r in range(2):
        g.node(f"enc/{r}", f"Pea replica-{r}", "a process running", "Executor Encoder", cluster="enc")
    g.cluster("idx", 'Pod "index" (shards=2)', "on Host cpu-1: a jinad Workspace, process Runtime")
    g.node("idx/head", "head", shape="diamond", fill="#dde8d0", cluster="idx")
    for s in range(2):
        g.node(f"idx/{s}", f"Pea shard-{s}", "Executor _index", cluster="idx")
    g.node("out", "Gateway", "merges the shards' answers", shape="ellipse", fill="#ffe7b3")
    g.node("result", "Documents", "with matches and scores", shape="ellipse", fill="#ffe7b3")
    g.edge("client", "gateway", "Documents")
    for r in range(2):
        g.edge("gateway", f"enc/{r}", "requests")
        g.edge(f"enc/{r}", "idx/head")
    for s in range(2):
        g.edge("idx/head", f"idx/{s}", style="dotted")
        g.edge(f"idx/{s}", "out")
    g.edge("out", "result")
    return render_svg(g, engine="python")  # the same picture on every machine, with or without Graphviz


# --------------------------------------------------------------------------- Pod and Flow options
def _options_table(model: Any, where: bool) -> list[str]:
    from jinad_fab.spec import names

    aliases: dict[str, list[str]] = {}
    for key, field in names(model).items():
        if key != field:
            aliases.setdefault(field, []).append(key)
    props = model.model_json_schema(mode="validation")["properties"]
    head = "| option | type | default |" + (" applies to |" if where else "") + " meaning |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for field, info in model.model_fields.items():
        name = f"`{field}`" + "".join(f" (or `{a}`)" for a in aliases.get(field, []))
        default = "required" if info.is_required() else "" if info.default is None else f"`{info.default!r}`"
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        applies = {"remote": "a Pod on a jinad host", "local": "a Pod the Flow runs"}.get(extra.get("only"), "any Pod")
        prop = props.get(field) or next((props[a] for a in aliases.get(field, []) if a in props), {})
        cells = [name, _type(prop).replace("\\|", "|"), default] + ([applies] if where else []) + [_prose(info.description or "")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _prose(text: str) -> str:
    """Plain text for a Markdown cell: `code` kept, underscores and stars elsewhere shown as typed."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("_", "\\_").replace("*", "\\*") for i, p in enumerate(parts))


def options_markdown() -> str:
    from jinad_fab.spec import FlowSpec, PodSpec

    return "\n".join([
        "# Pod and Flow options", "",
        "Generated from `jinad_fab.spec`, the one place that lists them: `Flow.add(...)`, a `pods:` entry",
        "of Flow YAML, `jinad-fab pod --option`, and the daemon's `POST /pods` body take the same names.",
        "A misspelt option is refused with the closest known one (`paralel`: did you mean `parallel`?).", "",
        "## Pod options (`Flow.add`, `pods:` entries)", "", *_options_table(PodSpec, where=True), "",
        *_nested(PodSpec),
        "## Flow options (`Flow(...)`, the `with:` block)", "", *_options_table(FlowSpec, where=False), "",
    ])


def _nested(model: Any) -> list[str]:
    """A table for each mapping an option takes (``spread:`` and its parts), under its own name: the
    type column of the options links there."""
    import jinad_fab.spec as spec

    out: list[str] = []
    for name in model.model_json_schema(mode="validation").get("$defs", {}):
        nested = getattr(spec, name, None)
        if nested is not None:
            out += [f"### {name}", "", _prose((nested.__doc__ or "").strip()), "",
                    *_options_table(nested, where=False), ""]
    return out


# --------------------------------------------------------------------------- the hook
def on_files(files: Files, config: Any) -> Files:
    spec = openapi()
    generated = {
        "reference/rest-api.md": rest_api_markdown(spec),
        "reference/openapi.json": json.dumps(spec, indent=2) + "\n",
        "reference/cli.md": cli_markdown(),
        "reference/options.md": options_markdown(),
        "assets/concepts.svg": concepts_svg(),
    }
    for path, content in generated.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=content))
    return files

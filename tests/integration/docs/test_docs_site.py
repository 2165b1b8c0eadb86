"""The user docs build with `mkdocs build --strict`, offline, and their reference pages hold what the
code serves: every route of the daemon's OpenAPI and every command of both CLIs."""

from __future__ import annotations

import html
import os
import pathlib
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("material")

ROOT = pathlib.Path(__file__).resolve().parents[3]
PAGES = ["index", "quickstart", "concepts", "operating", "export", "security", "migration", "architecture",
         "reference/options", "reference/cli", "reference/rest-api"]


def _build(config: pathlib.Path, site: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=config.parent)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("site")
    r = _build(ROOT / "mkdocs.yml", out)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "WARNING" not in r.stderr, r.stderr[-4000:]
    return out


def _text(page: pathlib.Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


@pytest.mark.timeout(360)
def test_every_page_is_built_and_nothing_is_fetched_from_elsewhere(site):
    for name in PAGES:
        assert (site / f"{name}.html").is_file(), name
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        # scripts, styles, fonts and images all come from the site itself: it works without a network
        external = re.findall(r'<(?:script|img|link|source|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"', text)
        assert not external, (page.name, external)


@pytest.mark.timeout(360)
def test_rest_api_page_lists_every_route_of_the_daemon(site, tmp_path):
    from jinad_fab.daemon.app import create_app
    from jinad_fab.daemon.settings import DaemonSettings

    spec = create_app(DaemonSettings(home=tmp_path / "home")).openapi()
    page = _text(site / "reference" / "rest-api.html")
    routes = [(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in ("get", "post", "put", "delete")]
    assert len(routes) >= 10
    for method, path in routes:
        assert f"{method} {path}" in page, (method, path)
    for schema in spec["components"]["schemas"]:
        assert schema in page
    assert (site / "reference" / "openapi.json").read_text(encoding="utf-8").lstrip().startswith("{")


@pytest.mark.timeout(360)
def test_cli_page_holds_every_commands_help(site):
    import click

    from jinad_fab.cli import daemon as jinad_cli
    from jinad_fab.cli import main as fab_cli

    fab_cli._register()
    page = _text(site / "reference" / "cli.html")

    def walk(cmd: click.Command, path: list[str], parent=None):
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
        yield " ".join(path), cmd
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, [*path, name], ctx)

    names = list(walk(fab_cli.cli, ["jinad-fab"])) + list(walk(jinad_cli.cli, ["jinad"]))
    assert len(names) > 20
    for name, cmd in names:
        assert f"Usage: {name}" in page, name
        for param in cmd.params:
            if getattr(param, "hidden", False):  # deprecated spellings stay out of the docs
                continue
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert opt in page, (name, opt)


@pytest.mark.timeout(360)
def test_concepts_picture_is_drawn_from_the_vocabulary(site):
    svg = (site / "assets" / "concepts.svg").read_text(encoding="utf-8")
    words = " ".join(t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text"))
    for word in ("Client", "Gateway", "Pea replica-0", "Executor", "Workspace", "Host", "Runtime", "shard-1"):
        assert word in words
    assert 'src="assets/concepts.svg"' in (site / "concepts.html").read_text(encoding="utf-8")


@pytest.mark.timeout(360)
def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The check has teeth: one broken link in a copy of the docs fails the build."""
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    with open(copy / "docs" / "quickstart.md", "a", encoding="utf-8") as fh:
        fh.write("\nSee [a page that does not exist](no-such-page.md).\n")
    r = _build(copy / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0
    assert "no-such-page.md" in r.stderr


@pytest.mark.timeout(120)
def test_the_documented_shell_completion_works():
    """The quickstart's completion lines: the script is produced, and it completes a subcommand."""
    page = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    assert "_JINAD_FAB_COMPLETE=bash_source jinad-fab" in page
    cmd = [sys.executable, "-c", "from jinad_fab.cli.main import main; main()"]
    script = subprocess.run(cmd, env={**os.environ, "_JINAD_FAB_COMPLETE": "bash_source"}, capture_output=True,
                            text=True, timeout=60)
    assert script.returncode == 0 and "complete -o nosort -F" in script.stdout
    done = subprocess.run(cmd, env={**os.environ, "_JINAD_FAB_COMPLETE": "bash_complete",
                                    "COMP_WORDS": "jinad-fab hel", "COMP_CWORD": "1"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "plain,hello" in done.stdout.splitlines(), done.stdout


@pytest.mark.timeout(360)
def test_options_page_lists_every_pod_and_flow_option_from_the_spec(site):
    from jinad_fab.spec import FlowSpec, PodSpec

    page = _text(site / "reference" / "options.html")
    for model in (PodSpec, FlowSpec):
        for field, info in model.model_fields.items():
            assert field in page and " ".join(info.description.replace("`", "").split())[:60] in page, field
    assert "parallel (or replicas)" in page and "a Pod on a jinad host" in page

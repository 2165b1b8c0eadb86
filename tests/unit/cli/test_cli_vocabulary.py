"""One CLI vocabulary: every command of the Click tree has Examples in its --help, hosts are chosen
with -l/--limit (Ansible patterns), host parallelism is --forks, log lines -n/--tail, and the
old spellings still work for a while with a one-line notice."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from jinad_fab import __version__
from jinad_fab.cli.commands._common import print_table, table
from jinad_fab.cli.main import _register, cli

# Commands that print a file (a Flow's YAML has --json; a unit or a Dockerfile is the file itself)
# or stream an interactive session are the only ones without --json.
PRINTS_A_FILE = {("render", "unit"), ("render", "dockerfile")}
# Commands that place a Flow's Pods over the whole inventory (a Pod's `hosts:` says where) take no -l.
WHOLE_INVENTORY = {("flow", "up"), ("flow", "rollback"), ("flow", "scale"), ("flow", "update"), ("render", "flow"), ("render", "unit"), ("hello", "images")}


@pytest.fixture(scope="module", autouse=True)
def _commands() -> None:
    _register()


def walk(group: click.Group, path: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        yield path + (name,), sub
        if isinstance(sub, click.Group):
            yield from walk(sub, path + (name,))


def all_commands():
    _register()
    return [((), cli), *walk(cli)]


def option_names(cmd: click.Command, *, hidden: bool = False) -> set[str]:
    return {o for p in cmd.params if isinstance(p, click.Option) and (hidden or not p.hidden)
            for o in (*p.opts, *p.secondary_opts)}


def test_the_tree_is_walked_whole() -> None:
    paths = {p for p, _ in all_commands()}
    for expected in [("flow", "create"), ("flow", "up"), ("flow", "tail"), ("provision", "deploy"),
                     ("exec",), ("render", "dockerfile"), ("hosts",), ("ping",)]:
        assert expected in paths


@pytest.mark.parametrize("path", [p for p, _ in all_commands()], ids=lambda p: " ".join(p) or "jinad-fab")
def test_every_help_has_an_examples_section(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    heading = re.search(r"^ *Examples:$", result.output, re.MULTILINE)
    assert heading, result.output
    examples = result.output[heading.end():]
    # each example is a real invocation of this very command
    assert f"jinad-fab {' '.join(path)}".rstrip() in examples


@pytest.mark.parametrize(("path", "cmd"), [(p, c) for p, c in all_commands() if not isinstance(c, click.Group)],
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_one_spelling_for_hosts_forks_and_tails(path, cmd) -> None:
    visible = option_names(cmd)
    assert not visible & {"-g", "--group", "--lines"}, path
    # --parallel is only ever a Pod's replicas (demo, pod, hello); hosts at a time are --forks
    for p in cmd.params:
        if "--parallel" in getattr(p, "opts", ()) and not p.hidden:
            assert "-p" not in p.opts and "replica" in (p.help or "replicas").lower(), path
    if "--inventory" in visible:
        if path not in WHOLE_INVENTORY:
            assert {"-l", "--limit"} <= visible, path
    if "-n" in visible:
        assert "--tail" in visible, path
    if "--tail" in visible:
        assert "-n" in visible, path


@pytest.mark.parametrize(("path", "cmd"), [(p, c) for p, c in all_commands() if not isinstance(c, click.Group)],
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_that_prints_a_result_has_json(path, cmd) -> None:
    if path in PRINTS_A_FILE or path[0] in ("demo", "hello"):
        pytest.skip("prints a file / an interactive demo (owned by the hello commands)")
    assert "--json" in option_names(cmd), path


def test_host_patterns_and_old_spellings_on_a_real_local_inventory() -> None:
    """exec on the shipped `local` inventory runs through invoke here, no SSH: real work, real output."""
    runner = CliRunner()
    new = runner.invoke(cli, ["exec", "-i", "local", "-l", "all[0]", "--forks", "1", "--json", "echo hi-$((6*7))"])
    assert new.exit_code == 0, new.output
    assert [(r["host"], r["stdout"].strip()) for r in json.loads(new.stdout)] == [("localhost", "hi-42")]
    assert "deprecated" not in new.stderr

    old = runner.invoke(cli, ["exec", "-i", "local", "-g", "~local.*", "-p", "1", "--json", "echo old"])
    assert old.exit_code == 0, old.output
    assert [r["stdout"].strip() for r in json.loads(old.stdout)] == ["old"]
    assert "-g/--group is deprecated and will be removed; use -l/--limit" in old.stderr
    assert "-p/--parallel is deprecated and will be removed; use --forks" in old.stderr

    miss = runner.invoke(cli, ["exec", "-i", "local", "-l", "gpu[0]", "true"])
    assert miss.exit_code == 2 and "'gpu[0]' matches no host or group" in miss.output


def test_wide_tables_keep_ids_whole_on_a_narrow_terminal() -> None:
    flow_id, ws_id = "jflow-" + "a1" * 16, "jworkspace-" + "b2" * 16
    buf = io.StringIO()
    print_table(table("Flows", ("id", "state", "workspace", "file", "gateway"),
                      [(flow_id, "RUNNING", ws_id, "flows/flow.yml", "203.0.113.11:50123/50124")],
                      whole=("id", "workspace")),
                Console(file=buf, width=80, force_terminal=False))
    assert flow_id in buf.getvalue() and ws_id in buf.getvalue()


def test_versions_and_shell_completion() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(cli, [flag])
        assert result.exit_code == 0 and result.output == f"jinad-fab, version {__version__}\n"
    from jinad_fab.cli.daemon import cli as jinad

    result = CliRunner().invoke(jinad, ["--version"])
    assert result.exit_code == 0 and result.output == f"jinad, version {__version__}\n"

    env = {**os.environ, "_JINAD_FAB_COMPLETE": "bash_source"}
    script = subprocess.run([sys.executable, "-m", "jinad_fab.cli.main"], env=env, capture_output=True,
                            text=True, timeout=300, check=True).stdout
    assert "complete -o nosort -F" in script and "_JINAD_FAB_COMPLETE=bash_complete" in script
    env = {**os.environ, "_JINAD_FAB_COMPLETE": "bash_complete", "COMP_WORDS": "jinad-fab flow t", "COMP_CWORD": "2"}
    words = subprocess.run([sys.executable, "-m", "jinad_fab.cli.main"], env=env, capture_output=True,
                           text=True, timeout=300, check=True).stdout.split()
    assert words == ["plain,tail"]


def test_a_check_run_reads_as_what_would_change(capsys) -> None:
    from jinad_fab.cli.commands.provision import _print_recap
    from jinad_fab.deploy.playbooks import HostRecap, PlaybookRun
    from jinad_fab.deploy.results import GroupResult

    recap = HostRecap("gpu-1", tasks_ok=12, changed=2, changes=[
        {"task": "Write the unit", "diff": "--- before\n+++ after\n-Port=8000\n+Port=8100\n"},
        {"task": "Point current at the release", "diff": ""}])
    run = PlaybookRun("deploy.yml", 0, "successful", GroupResult.of([recap, HostRecap("cpu-1", tasks_ok=14)]))
    _print_recap(run, check=True, diff=True)
    out = capsys.readouterr().out
    assert "deploy.yml (check: nothing was changed): successful" in out and "would change" in out
    assert "gpu-1: 2 task(s) would change:" in out and "cpu-1:" not in out
    assert "~ Write the unit" in out and "+Port=8100" in out and "-Port=8000" in out
    _print_recap(run, check=False, diff=False)
    assert "task(s)" not in capsys.readouterr().out  # a plain run prints the recap only

"""The error tree: every class of ours is drawn in errors.py's docstring and carries its codes."""

from __future__ import annotations

import importlib
import pkgutil
import re

import click
import pytest

import jinad_fab
from jinad_fab import errors
from jinad_fab.errors import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, JinadFabError


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


@pytest.fixture(scope="module")
def every_error() -> set[type]:
    for mod in pkgutil.walk_packages(jinad_fab.__path__, "jinad_fab."):
        if not mod.name.endswith("__main__") and ".assets" not in mod.name:
            importlib.import_module(mod.name)
    return {c for c in _all_subclasses(JinadFabError) if c.__module__.startswith("jinad_fab.")}


def test_the_docstring_tree_names_every_error_of_the_package(every_error):
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__))
    names = {c.__name__ for c in every_error}
    assert names - drawn == set(), "errors missing from the tree in errors.py"
    assert drawn - names == set(), "the tree names errors that do not exist"
    assert len(every_error) > 25


def test_each_error_carries_an_exit_code_and_an_http_status(every_error):
    for cls in every_error:
        assert cls.exit_code in (EXIT_USAGE, EXIT_FAILED, EXIT_UNREACHABLE), cls
        assert 400 <= cls.http_status <= 599, cls
    assert errors.BadAddress.exit_code == EXIT_USAGE
    assert errors.BadConfig.exit_code == EXIT_FAILED and errors.BadConfig.http_status == 400
    assert errors.DaemonUnreachable.exit_code == errors.HostsUnreachable.exit_code == EXIT_UNREACHABLE
    assert (errors.Forbidden.http_status, errors.Unprocessable.http_status, errors.Busy.http_status) == (403, 422, 503)


def test_the_client_maps_each_status_back_to_the_class_that_answers_with_it():
    from jinad_fab.remote.client import _STATUS_ERRORS

    for status, cls in _STATUS_ERRORS.items():
        assert cls.http_status == status, (status, cls)


def test_an_error_about_one_object_keeps_its_id_and_log_tail_as_data():
    err = errors.StartFailed("jpod-1 failed to start: boom", host="gpu1:8000", object_id="jpod-1",
                             log_tail=["line 1", "line 2"])
    assert err.detail == {"message": "jpod-1 failed to start: boom", "id": "jpod-1", "log_tail": ["line 1", "line 2"]}
    assert str(err) == "gpu1:8000: jpod-1 failed to start: boom\n--- last log lines ---\nline 1\nline 2"
    assert errors.NotFound("no flow").detail == "no flow" and errors.NotFound("x").status_code == 404


def test_the_cli_exits_with_the_class_code():
    from jinad_fab.cli.exits import CliError, Group

    assert CliError(errors.DaemonUnreachable("down")).exit_code == EXIT_UNREACHABLE
    assert CliError(errors.BadAddress("h:0", "port 0 is out of range 1-65535")).exit_code == EXIT_USAGE
    assert CliError(errors.Conflict("busy")).exit_code == EXIT_FAILED

    @click.group(cls=Group)
    def cli() -> None:
        pass

    @cli.command()
    @click.option("--n", type=click.IntRange(1))
    def run(n: int) -> None:
        raise errors.HostsUnreachable("nobody home")

    from click.testing import CliRunner

    assert CliRunner().invoke(cli, ["run", "--n", "0"]).exit_code == EXIT_USAGE  # Click alone: 2
    assert CliRunner().invoke(cli, ["--bogus"]).exit_code == EXIT_USAGE
    assert CliRunner().invoke(cli, ["nope"]).exit_code == EXIT_USAGE
    result = CliRunner().invoke(cli, ["run", "--n", "1"])
    assert result.exit_code == EXIT_UNREACHABLE and "nobody home" in result.output

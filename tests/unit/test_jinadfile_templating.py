"""`.jinad` parsing and the workspace Dockerfile template: pure functions, no engine."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from jinad_fab import jinadfile, templating
from jinad_fab.errors import BadConfig


def test_a_jinad_file_parses_into_plain_data():
    config = jinadfile.parse('python = 3.10\nports = 45678, 45679\nrun = "python app.py \'a b\'"\n')
    assert config.python == "3.10"
    assert config.ports == (45678, 45679)
    assert config.run == ("python", "app.py", "a b")
    assert jinadfile.parse("[jinad]\nports = 1\n").ports == (1,)
    assert jinadfile.JinadConfig.from_mapping(config.as_dict()) == config
    assert jinadfile.parse("") == jinadfile.JinadConfig()


@pytest.mark.parametrize(
    "text",
    [
        "ports = http\n",
        "ports = 70000\n",
        "python = latest\n",
        "bogus = 1\n",
        'run = "unterminated\n',
        "run = python\n  app.py\n",  # an INI continuation line would smuggle a newline in
        "requirements = ../../etc/passwd\n",
        "dockerfile = /etc/Dockerfile\n",
        "[one]\nports = 1\n[two]\nports = 2\n",
    ],
)
def test_bad_jinad_files_are_refused(text):
    with pytest.raises(BadConfig):
        jinadfile.parse(text)


def test_requirements_may_only_name_packages():
    assert jinadfile.check_requirements("# deps\nsix==1.16  # pinned\n\nnumpy>=1\n") == "six==1.16\nnumpy>=1\n"
    for line in ("--index-url http://127.0.0.1:9/", "-e .", "-r other.txt", "pkg @ https://x/y.whl", "./local"):
        with pytest.raises(BadConfig):
            jinadfile.check_requirements(line + "\n")


def test_the_rendered_dockerfile_holds_user_values_only_as_data():
    config = jinadfile.parse('ports = 8080\nrun = "python app.py {{ 7 * 7 }} \'RUN curl\'"\n')
    text = templating.render_dockerfile(config, version="1.2.3", has_requirements=True)
    assert "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}" in text
    assert "USER 10001:10001" in text and "EXPOSE 8080" in text
    assert 'pip install --no-index --find-links /tmp/jinad-wheels "jinad-fab==1.2.3"' in text
    (cmd,) = re.findall(r"^CMD (.*)$", text, flags=re.M)
    assert json.loads(cmd) == ["python", "app.py", "{{", "7", "*", "7", "}}", "RUN curl"]
    assert "49" not in text  # the user's braces were never evaluated
    assert not any(line.startswith("RUN curl") for line in text.splitlines())


def test_same_inputs_render_the_same_text_and_options_change_it():
    config = jinadfile.JinadConfig()
    one = templating.render_dockerfile(config, version="1", base_image="jinad-fab/base:bookworm")
    assert one == templating.render_dockerfile(config, version="1", base_image="jinad-fab/base:bookworm")
    assert "ARG BASE_IMAGE=jinad-fab/base:bookworm" in one and "-r /tmp/jinad-wheels" not in one
    online = templating.render_dockerfile(config, version="1", wheelhouse=False, has_requirements=True)
    assert "--no-index" not in online and "pip install -r /tmp/jinad-wheels/requirements.txt" in online
    with pytest.raises(BadConfig):
        templating.render_dockerfile(config, version="1", base_image="evil\nRUN id")


def test_templates_render_in_a_sandbox_with_strict_undefined():
    env = templating.environment()
    with pytest.raises(Exception, match="unsafe|not safely|access"):
        env.from_string("{{ ''.__class__.__mro__[1].__subclasses__() }}").render()
    with pytest.raises(BadConfig):
        templating.render("Dockerfile.j2", version="1")  # everything else is missing


def test_render_dockerfile_command_prints_what_the_daemon_builds(tmp_path):
    from jinad_fab.cli.main import _register, cli

    _register()
    (tmp_path / ".jinad").write_text("ports = 45678\nrun = \"python app.py 45678\"\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    result = CliRunner().invoke(cli, ["render", "dockerfile", str(tmp_path), "--base-image", "x/y:z"])
    assert result.exit_code == 0, result.output
    config = jinadfile.load(tmp_path)
    from importlib.metadata import version

    assert result.output == templating.render_dockerfile(config, version=version("jinad-fab"), base_image="x/y:z",
                                                         has_requirements=True)
    (tmp_path / ".jinad").write_text("ports = many\n")
    result = CliRunner().invoke(cli, ["render", "dockerfile", str(tmp_path)])
    assert result.exit_code == 2 and "ports must be integers" in result.output

"""The one YAML module: construct / check / keep modes, safe loading only, errors that name the file."""

import pytest

from jinad_fab import Flow, safe_yaml
from jinad_fab.errors import BadConfig
from jinad_fab.executors import load_executor

FLOW = "!Flow\nversion: 1\npods:\n  - name: a\n    uses: !MyExec {with: {k: 1}}\n"


def test_construct_mode_reads_flow_and_executor_tags_as_this_package_runs_them():
    data = safe_yaml.loads(FLOW)
    assert data["__kind__"] == "Flow"
    assert data["pods"][0]["uses"] == {"jtype": "MyExec", "with": {"k": 1}}
    with pytest.raises(BadConfig, match="tag !MyExec must tag a mapping"):
        safe_yaml.loads("uses: !MyExec just-a-scalar\n")


def test_check_mode_keeps_the_data_under_local_tags():
    data = safe_yaml.loads(FLOW, mode="check")
    assert data == {"version": 1, "pods": [{"name": "a", "uses": {"with": {"k": 1}}}]}
    assert safe_yaml.loads("a: !Seq [1, 2]\nb: !Scalar x\n", mode="check") == {"a": [1, 2], "b": "x"}


def test_keep_mode_writes_back_the_tags_it_read():
    data = safe_yaml.loads(FLOW, mode="keep")
    assert isinstance(data, safe_yaml.Tagged) and data.tag == "!Flow"
    assert isinstance(data.value["pods"][0]["uses"], safe_yaml.Tagged)
    text = safe_yaml.dumps(data)
    assert text.startswith("!Flow\n") and "!MyExec" in text
    assert safe_yaml.loads(text, mode="keep") == data


@pytest.mark.parametrize("mode", ["construct", "check", "keep"])
def test_every_mode_refuses_python_tags(tmp_path, mode):
    marker = tmp_path / "pwned"
    for evil in (f"!!python/object/apply:os.system ['touch {marker}']",
                 f"x: !!python/object/apply:os.system ['touch {marker}']",
                 "!!python/name:os.system\n"):
        with pytest.raises(BadConfig, match="could not determine a constructor"):
            safe_yaml.loads(evil, mode=mode)
    assert not marker.exists()


def test_unknown_mode_is_a_programming_error():
    with pytest.raises(ValueError, match="mode must be one of"):
        safe_yaml.loads("a: 1", mode="unsafe")


def test_a_yaml_error_names_the_file_with_its_line(tmp_path):
    path = tmp_path / "flow.yml"
    path.write_text("!Flow\nversion: 1\npods:\n  - name: a\n   bad: [\n")
    with pytest.raises(BadConfig) as err:
        Flow.load_config(str(path))
    msg = str(err.value)
    assert f'in "{path}", line' in msg and "<unicode string>" not in msg

    exec_yml = tmp_path / "enc.yml"
    exec_yml.write_text("jtype: Enc\nwith: {a: 1\n")
    with pytest.raises(BadConfig) as err:
        load_executor(str(exec_yml))
    assert f'in "{exec_yml}", line' in str(err.value) and "invalid Executor config" in str(err.value)

    with pytest.raises(BadConfig) as err:
        Flow.load_config("!Flow\npods: [\n")
    assert "<unicode string>" not in str(err.value) and "<Flow YAML string>" in str(err.value)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(BadConfig, match=f"{path} is not UTF-8 text"):
        safe_yaml.load_file(path)

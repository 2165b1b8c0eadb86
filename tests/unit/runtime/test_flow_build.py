"""Building Flows and reading/writing their YAML: no processes started."""

import pytest

from jinad_fab import Flow
from jinad_fab.errors import BadConfig


def test_add_chains_by_default_and_returns_a_new_flow():
    f0 = Flow()
    f1 = f0.add(name="a")
    f2 = f1.add(name="b", parallel=2)
    assert f0.pods == {} and list(f1.pods) == ["a"]
    assert f2.pods["a"]["needs"] == ["gateway"] and f2.pods["b"]["needs"] == ["a"]
    assert f2.topological_order() == ["a", "b"]


def test_needs_join():
    f = (Flow().add(name="r1").add(name="r2", needs="gateway").needs(["r1", "r2"], name="join"))
    assert f.pods["join"]["needs"] == ["r1", "r2"] and f.pods["join"]["uses"] == "_pass"
    assert f.topological_order().index("join") == 2


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "a", "needs": "ghost"}, "ghost"),
    ({"name": "a", "parallel": 0}, "parallel"),
    ({"name": "a", "shards": "2"}, "shards"),
    ({"name": "a", "colour": 1}, "unknown argument"),
    ({"name": "gateway"}, "invalid Pod name"),
    ({"name": "a", "uses_with": [1]}, "uses_with"),
])
def test_bad_add_arguments(kwargs, match):
    with pytest.raises(BadConfig, match=match):
        Flow().add(**kwargs)


def test_duplicate_names_refused():
    with pytest.raises(BadConfig, match="already exists"):
        Flow().add(name="a").add(name="a")


def test_seed_yaml_form_with_forward_references(tmp_path):
    y = tmp_path / "flow.yml"
    y.write_text("""!Flow
version: 1
with:
  protocol: http
pods:
  - name: joiner
    method: add
    needs: [p1, p2]
  - name: p1
    uses: _logforward
    needs: gateway
  - name: p2
    uses: _pass
    parallel: 2
    needs: gateway
""")
    f = Flow.load_config(str(y))
    assert f.protocol == "http"
    assert f.topological_order()[-1] == "joiner"
    assert f.pods["p2"]["parallel"] == 2
    assert f.base_dir == str(tmp_path)


def test_save_then_load_gives_the_same_flow(tmp_path):
    f = Flow(port_expose=45678).add(name="enc", uses="_logforward", parallel=2).add(
        name="idx", uses="_index", shards=3, uses_with={"metric": "cosine"})
    path = tmp_path / "saved.yml"
    f.save_config(str(path))
    text = path.read_text()
    assert text.startswith("!Flow\n")
    g = Flow.load_config(str(path))
    assert g.pods == f.pods and g.args["port_expose"] == 45678


@pytest.mark.parametrize("text,match", [
    ("!Flow\nversion: 1\npods:\n - name: a\n   needs: b\n - name: b\n   needs: a\n", "cycle: a -> b -> a"),
    ("!Flow\nversion: 1\npods:\n - name: a\n   needs: zz\n", "'zz'"),
    ("!Flow\nversion: 7\npods:\n - name: a\n", "version"),
    ("!Flow\nversion: 1\n", "no `pods:`"),
    ("!Flow\nversion: 1\nbogus: 1\npods:\n - name: a\n", "bogus"),
    ("!Flow\nversion: 1\npods:\n - name: a\n - name: a\n", "duplicate"),
    ("!Flow\npods: [1]\n", "must be a mapping"),
    ("!!python/object/apply:os.getcwd []", "invalid Flow YAML"),
    ("pods: [", "invalid Flow YAML"),
])
def test_bad_flow_yaml(text, match):
    with pytest.raises(BadConfig, match=match):
        Flow.load_config(text)


def test_missing_file():
    with pytest.raises(BadConfig, match="does not exist"):
        Flow.load_config("/nonexistent/flow.yml")


def test_class_defined_outside_a_file_is_refused():
    from jinad_fab import Executor

    ns: dict = {}
    exec("from jinad_fab import Executor\nclass Floating(Executor):\n    pass\n", ns)
    assert issubclass(ns["Floating"], Executor)
    with pytest.raises(BadConfig, match="Floating"):
        Flow().add(uses=ns["Floating"])

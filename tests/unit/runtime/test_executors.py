import os
import textwrap

import pytest

from jinad_fab import Document, DocumentArray, Executor, requests
from jinad_fab.errors import BadConfig, ExecutorNotFound
from jinad_fab.executors import load_executor
from jinad_fab.safe_yaml import loads as load_yaml


class Tagger(Executor):
    def __init__(self, label: str = "x", **kwargs):
        super().__init__(**kwargs)
        self.label = label

    @requests(on="/index")
    def on_index(self, docs, parameters):
        for d in docs:
            d.tags["label"] = self.label

    @requests(on=["/search", "custom"])
    def on_search(self, docs, **kwargs):
        return DocumentArray([Document(id="replaced")])

    @requests
    def fallback(self, endpoint):
        self.seen = endpoint


def test_requests_binds_endpoints_and_a_default():
    ex = Tagger()
    fn, names = ex.handler_for("/index")
    assert fn.__name__ == "on_index" and names == ("docs", "parameters")
    assert ex.handler_for("/custom")[0].__name__ == "on_search"
    assert ex.handler_for("/anything")[0].__name__ == "fallback"
    assert ex.handler_for("/anything")[1] == ("endpoint",)
    assert ex.endpoints == ["*", "/custom", "/index", "/search"]


def test_load_by_class_name_with_uses_with_and_metas():
    ex = load_executor("Tagger", uses_with={"label": "y"}, uses_metas={"name": "tagger-1"})
    assert isinstance(ex, Tagger) and ex.label == "y" and ex.metas["name"] == "tagger-1"


def test_load_builtins():
    assert load_executor("_pass").handler_for("/index") is None
    ex = load_executor("_logforward")
    assert ex.handler_for("/x")[1] == ("endpoint", "header")  # never asks for docs: no decoding


def test_load_from_yaml_file_with_py_modules(tmp_path):
    (tmp_path / "mine.py").write_text(textwrap.dedent("""
        from jinad_fab import Executor, requests

        class FromFile(Executor):
            def __init__(self, greeting="hi", **kwargs):
                super().__init__(**kwargs)
                self.greeting = greeting

            @requests
            def go(self, docs):
                for d in docs:
                    d.text = self.greeting
    """))
    (tmp_path / "mine.yml").write_text("jtype: FromFile\nwith:\n  greeting: hello\nmetas:\n  name: ff\n"
                                       "py_modules:\n  - mine.py\n")
    ex = load_executor(str(tmp_path / "mine.yml"))
    assert ex.greeting == "hello" and ex.metas["name"] == "ff"
    docs = DocumentArray([Document()])
    ex.handler_for("/x")[0](docs=docs)
    assert docs[0].text == "hello"
    # the old tag form reads the same
    ex2 = load_executor("!FromFile\nwith:\n  greeting: yo\n")
    assert ex2.greeting == "yo"


def test_inline_dict_form():
    ex = load_executor({"jtype": "Tagger", "with": {"label": "z"}})
    assert ex.label == "z"


@pytest.mark.parametrize("uses", ["NoSuchExecutor", "missing.yml", 42, {"with": {}}, ""])
def test_unknown_uses_is_a_clear_error(uses):
    with pytest.raises(ExecutorNotFound) as info:
        load_executor(uses)
    assert repr(uses) in str(info.value)


def test_wrong_arguments_are_bad_config():
    with pytest.raises(BadConfig, match="Tagger"):
        load_executor("Tagger", uses_with={"nope": 1})
    with pytest.raises(BadConfig, match="unknown keys"):
        load_executor({"jtype": "Tagger", "withh": {}})


def test_unsafe_yaml_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"!!python/object/apply:os.system ['touch {marker}']"
    with pytest.raises(BadConfig):
        load_yaml(evil)
    with pytest.raises(BadConfig):
        load_executor(f"jtype: Tagger\nwith:\n  label: {evil}\n")
    assert not marker.exists()


def test_py_module_that_raises_on_import_names_the_file(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(ExecutorNotFound, match="boom at import"):
        load_executor("Whatever", py_modules=[str(bad)])


def test_workspace_is_per_shard(tmp_path):
    ex = Tagger(metas={"workspace": str(tmp_path), "name": "t"}, runtime_args={"shard_id": 1})
    assert ex.workspace == os.path.join(str(tmp_path), "t-shard1") and os.path.isdir(ex.workspace)


def test_uses_requests_and_yaml_requests_rebind_endpoints(tmp_path):
    from jinad_fab import Document, DocumentArray, Executor, requests

    class Rebind(Executor):
        @requests(on="/index")
        def tag_a(self, docs):
            for d in docs:
                d.tags["by"] = "a"

        def tag_b(self, docs):
            for d in docs:
                d.tags["by"] = "b"

    def by(ex, endpoint):
        docs = DocumentArray([Document()])
        fn, _ = ex.handler_for(endpoint)
        fn(docs=docs)
        return docs[0].tags["by"]

    ex = load_executor("Rebind", uses_requests={"index": "tag_b", "/search": "tag_a"})
    assert by(ex, "/index") == "b" and by(ex, "/search") == "a"
    assert by(load_executor("Rebind"), "/index") == "a"  # the class table is untouched
    yml = tmp_path / "r.yml"
    yml.write_text("jtype: Rebind\nrequests:\n  /index: tag_b\n")
    assert by(load_executor(str(yml)), "/index") == "b"
    assert by(load_executor(str(yml), uses_requests={"/index": "tag_a"}), "/index") == "a"  # the Pod option wins
    with pytest.raises(BadConfig, match=r"'/index' -> 'tag_c': no such method \(its methods: tag_a, tag_b\)"):
        load_executor("Rebind", uses_requests={"/index": "tag_c"})
    with pytest.raises(BadConfig, match="no such method"):
        load_executor("Rebind", uses_requests={"/x": "_handlers"})  # private attributes are not handlers


def test_a_typo_in_uses_or_an_executor_key_gets_did_you_mean():
    with pytest.raises(ExecutorNotFound, match=r"did you mean '_logforward'\?"):
        load_executor("_logforwad")
    with pytest.raises(ExecutorNotFound, match=r"did you mean 'Tagger'\?"):
        load_executor("Tager")
    with pytest.raises(ExecutorNotFound) as err:
        load_executor("Zzzzzz")
    assert "did you mean" not in str(err.value)
    with pytest.raises(BadConfig, match=r"'wiht' \(did you mean 'with'\?\)"):
        load_executor({"jtype": "Tagger", "wiht": {}})

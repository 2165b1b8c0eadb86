"""Pure pieces of the daemon: the store (file and memory), path checks, log reading, YAML checks."""

from __future__ import annotations

import pytest

from jinad_fab.daemon import logs
from jinad_fab.daemon.store import Record, Store
from jinad_fab.daemon.workspaces import check_yaml, safe_relpath
from jinad_fab.errors import Invalid
from jinad_fab.schemas import kind_of, new_id


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path):
    s = Store(tmp_path / "db.sqlite3" if request.param == "file" else ":memory:")
    yield s
    s.close()


def test_store_round_trip_and_compare_and_set(store):
    rec = store.insert(Record(id=new_id("flow"), kind="flow", state="STARTING", runtime="process",
                              workspace_id="w", data={"a": 1}, handle={"pid": 5}))
    assert store.get(rec.id).handle == {"pid": 5}
    assert store.update(rec.id, state="RUNNING", data={"b": 2}, expect_state=["STARTING"]).data == {"a": 1, "b": 2}
    assert store.update(rec.id, state="STOPPED", expect_state=["STARTING"]) is None  # CAS refused
    assert [r.id for r in store.list(kind="flow", states=["RUNNING"])] == [rec.id]
    assert store.counts() == {"flow": {"RUNNING": 1}}
    assert store.delete(rec.id) and store.get(rec.id) is None


def test_store_survives_reopen(tmp_path):
    s = Store(tmp_path / "db")
    s.insert(Record(id="jpod-x", kind="pod", state="RUNNING", runtime="process"))
    s.close()
    s2 = Store(tmp_path / "db")
    assert s2.get("jpod-x").state == "RUNNING"
    assert s2._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s2.close()


@pytest.mark.parametrize("bad", ["", "../x", "/etc/passwd", "a/../../b", "x\x00y", "a\\b", "C:/x", "a" * 256,
                                 "./.", "ok/\x07bell"])
def test_safe_relpath_refuses(bad):
    with pytest.raises(Invalid) as err:
        safe_relpath(bad)
    assert err.value.status_code == 400


def test_a_long_refused_name_is_cut_in_the_middle_so_the_message_still_names_its_file():
    name = "/" + "d" * 300 + "/model.onnx"
    with pytest.raises(Invalid) as err:
        safe_relpath(name)
    message = str(err.value)
    assert "model.onnx'" in message and "'/ddd" in message, message
    assert len(message) < 120, message  # a hostile name does not flood the answer or the log


def test_safe_relpath_normalises():
    assert str(safe_relpath("./a//b/./c.txt")) == "a/b/c.txt"


def test_log_read_offsets_tail_and_wrapping(tmp_path):
    path = tmp_path / "x.log"
    logs.event(path, "one")
    with open(path, "a") as fh:
        fh.write("plain text line\n")
        fh.write('{"msg": "partial"')  # no newline yet: not served
    lines, end = logs.read(path)
    assert len(lines) == 2 and end == len(path.read_bytes()) - len('{"msg": "partial"')
    assert b'"source": "output"' in lines[1]
    assert logs.read(path, offset=1)[0] == lines[1:]
    assert logs.read(path, tail=1)[0] == lines[1:]
    assert logs.tail_messages(path, 5)[:2] == ["one", "plain text line"]


def test_check_yaml_accepts_local_tags_refuses_python(tmp_path):
    ok = tmp_path / "ok.yml"
    ok.write_text("!Flow\npods:\n  - uses: !MyExec {a: 1}\n")
    assert check_yaml(ok)["pods"][0]["uses"] == {"a": 1}
    evil = tmp_path / "evil.yml"
    evil.write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(Invalid):
        check_yaml(evil)


def test_typed_ids():
    fid = new_id("flow")
    assert fid.startswith("jflow-") and len(fid) == 6 + 32 and kind_of(fid) == "flow"
    with pytest.raises(ValueError):
        kind_of("jnope-123")


def test_store_fsyncs_workspace_rows_and_not_process_rows_which_survive_a_reopen(tmp_path):
    path = tmp_path / "jinad.db"
    s = Store(path)

    def sync_mode() -> int:  # 2 = FULL (fsync each commit), 1 = NORMAL
        return s._db.execute("PRAGMA synchronous").fetchone()[0]

    s.insert(Record(id="jworkspace-a", kind="workspace", state="PENDING", runtime="process"))
    assert sync_mode() == 2
    s.insert(Record(id="jpod-a", kind="pod", workspace_id="jworkspace-a", state="STARTING", runtime="process"))
    assert sync_mode() == 1
    s.update("jworkspace-a", state="ACTIVE")
    assert sync_mode() == 2
    s.update("jpod-a", state="RUNNING", handle={"pid": 1})
    assert sync_mode() == 1
    s.close()
    again = Store(path)  # a killed or restarted daemon reads every commit back
    assert again.get("jpod-a").state == "RUNNING" and again.get("jpod-a").handle == {"pid": 1}
    assert again.get("jworkspace-a").state == "ACTIVE"
    again.close()

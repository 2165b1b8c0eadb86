"""Per-host results: recaps from ansible-runner stats, task events, exit codes, SSH helpers."""

from __future__ import annotations

import paramiko
import pytest

from jinad_fab.deploy.playbooks import recaps_from_stats, task_event
from jinad_fab.deploy.results import GroupResult
from jinad_fab.deploy.ssh import CommandResult, _classify, _LineWriter, tail_command
from jinad_fab.errors import DeployError, HostsUnreachable

STATS = {
    "ok": {"a": 20, "b": 3, "c": 20},
    "changed": {"a": 2},
    "failures": {"b": 1},
    "dark": {"c": 1},
    "skipped": {"a": 5},
    "processed": {"a": 1, "b": 1, "c": 1},
}


def test_recaps_turn_runner_stats_around_per_host() -> None:
    changes = {"a": [{"task": "Write the unit", "diff": ""}, {"task": "Install", "diff": ""}]}
    recaps = recaps_from_stats(STATS, {"b": "Install jinad-fab: No matching distribution"}, changes)
    assert list(recaps) == ["a", "b", "c"]
    assert recaps["a"].as_dict() == {
        "host": "a", "succeeded": True, "ok": 20, "changed": 2, "failed": 0, "unreachable": 0, "skipped": 5,
        "rescued": 0, "ignored": 0, "message": "", "changes": changes["a"],
    }
    assert recaps["b"].changes == []
    assert not recaps["b"].ok and not recaps["b"].unreachable and "No matching" in recaps["b"].message
    assert recaps["c"].unreachable
    assert sorted(recaps.failed) == ["b", "c"] and sorted(recaps.unreachable) == ["c"]


def test_exit_codes_zero_two_four() -> None:
    ok = CommandResult("a", exit_code=0)
    failed = CommandResult("b", exit_code=1)
    dark = CommandResult("c", error="refused", unreachable=True)
    assert GroupResult.of([ok]).exit_code == 0
    assert GroupResult.of([ok, failed, dark]).exit_code == 2
    assert GroupResult.of([ok, dark]).exit_code == 4
    GroupResult.of([ok]).raise_for_failures("x")
    with pytest.raises(DeployError) as info:
        GroupResult.of([ok, failed, dark]).raise_for_failures("exec")
    assert info.value.exit_code == 2 and "failed on b, c (unreachable: c)" in str(info.value)
    assert set(info.value.results) == {"a", "b", "c"}
    with pytest.raises(HostsUnreachable) as info:
        GroupResult.of([ok, dark]).raise_for_failures("hosts")
    assert info.value.exit_code == 4 and "unreachable: c" in str(info.value)


def test_task_events_from_runner_events() -> None:
    ev = task_event({"event": "runner_on_ok", "event_data": {"host": "a", "task": "Install", "res": {"changed": True}}})
    assert (ev.host, ev.task, ev.status) == ("a", "Install", "changed")
    ev = task_event({"event": "runner_on_unreachable",
                     "event_data": {"host": "c", "task": "Gathering Facts", "res": {"msg": "ssh: connect refused"}}})
    assert (ev.status, ev.message) == ("unreachable", "ssh: connect refused")
    assert task_event({"event": "playbook_on_stats", "event_data": {}}) is None


def test_diffs_read_as_ansible_prints_them() -> None:
    """--diff: a template's before/after text, a file's state change (mappings), a prepared diff."""
    res = {"changed": True, "diff": [
        {"before": "Port=8000\nUser=jinad\n", "after": "Port=8100\nUser=jinad\n",
         "before_header": "/etc/jinad.env", "after_header": "dynamically generated"},
        {"before": {"path": "/opt/jinad/current", "state": "absent"},
         "after": {"path": "/opt/jinad/current", "state": "link"}},
        {"prepared": "+ /opt/jinad/wheelhouse/x.whl"},
    ]}
    ev = task_event({"event": "runner_on_ok", "event_data": {"host": "a", "task": "Write", "res": res}})
    assert ev.status == "changed"
    lines = ev.diff.splitlines()
    assert lines[:2] == ["--- /etc/jinad.env", "+++ dynamically generated"]
    assert "-Port=8000" in lines and "+Port=8100" in lines and " User=jinad" in lines
    assert '-  "state": "absent"' in lines and '+  "state": "link"' in lines
    assert lines[-1] == "+ /opt/jinad/wheelhouse/x.whl"
    unchanged = {"changed": False, "diff": {"before": "a\n", "after": "a\n"}}
    assert task_event({"event": "runner_on_ok", "event_data": {"host": "a", "task": "T", "res": unchanged}}).diff == ""


@pytest.mark.parametrize(
    ("exc", "unreachable"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError("timed out"), True),
        (paramiko.AuthenticationException("no key"), True),
        (paramiko.SSHException("banner"), True),
        (ValueError("bug"), False),
    ],
)
def test_ssh_errors_are_classified_in_one_place(exc: BaseException, unreachable: bool) -> None:
    assert _classify(exc)[0] is unreachable


def test_line_writer_hands_out_whole_lines() -> None:
    seen = []
    w = _LineWriter("h", "out", lambda *a: seen.append(a))
    w.write("one\ntw")
    w.write("o\nthr")
    w.flush()
    assert seen == [("h", "out", "one"), ("h", "out", "two"), ("h", "out", "thr")]


def test_tail_command_quotes_the_path() -> None:
    assert tail_command("/var/log/a b.log", 10) == "tail -n 10 -- '/var/log/a b.log'"
    assert tail_command("/x", 0, follow=True) == "tail -n 0 -F -- /x"

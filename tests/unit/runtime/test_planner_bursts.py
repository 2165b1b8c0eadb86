"""The planner's shared plan (every replica set with one member) and its bursts, without sockets:
what leaves, when, with which plan, and the loads a set that scales later is planned by."""

import orjson
import pytest

from jinad_fab.runtime.planner import Planner
from jinad_fab.wire import Message


class _Roots:
    """Stands for the sockets: records what would leave."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict, list]] = []

    def send_all(self, frames: list, header: dict) -> None:
        self.sent.append((orjson.loads(frames[0]), frames[1:]))


class _Entry(Planner):
    def __init__(self) -> None:
        super().__init__(_Roots())
        self.answers: list[Message] = []
        self.wired = True

    def _answer(self, rid: str, msg: Message) -> None:
        self.answers.append(msg)

    def _waiting(self) -> list[str]:
        return [fl.rid for fl in self.flights.values()]

    def request(self, rid: str) -> None:
        self._dispatch({"rid": rid, "ep": "/index", "params": {}}, [b"body-" + rid.encode()], rid)

    def answer(self, header: dict) -> None:
        self._on_result([orjson.dumps(header), b"answer"])


def _members(entry: Planner, **sets: list[str]) -> None:
    entry._members({"sets": {name: {"pod": name, "replicas": m} for name, m in sets.items()}})


def test_a_burst_leaves_at_its_end_in_order_with_the_shared_plan_and_counted_loads():
    entry = _Entry()
    _members(entry, a=["0"], b=["0"])
    with entry.held():
        for i in range(3):
            entry.request(f"r{i}")
        assert entry.roots.sent == []  # planned and counted, not sent yet
        assert entry.load == {"a": {"0": 3}, "b": {"0": 3}}
    assert [(h["rid"], h["plan"], body) for h, body in entry.roots.sent] == [
        (f"r{i}", {"a": "0", "b": "0"}, [f"body-r{i}".encode()]) for i in range(3)]
    entry.answer({"rid": "r1", "plan": {"a": "0", "b": "0"}})
    assert [m.header for m in entry.answers] == [{"rid": "r1"}]
    assert entry.load == {"a": {"0": 2}, "b": {"0": 2}}
    with pytest.raises(RuntimeError), entry.held(), entry.held():
        pass


def test_a_set_that_scales_while_requests_flow_plans_by_the_loads_the_shared_plan_counted():
    entry = _Entry()
    _members(entry, a=["0"])
    for i in range(4):
        entry.request(f"r{i}")
    _members(entry, a=["0", "1"])  # a second replica: the first one still holds 4 requests
    entry.request("r4")
    entry.request("r5")
    plans = [h["plan"]["a"] for h, _ in entry.roots.sent]
    assert plans == ["0", "0", "0", "0", "1", "1"]
    for i in range(6):
        entry.answer({"rid": f"r{i}"})
    assert entry.load == {"a": {"0": 0, "1": 0}} and not entry.flights
    _members(entry, a=["1"])  # back to one member (the other, idle, is forgotten): the shared plan names it
    entry.request("r6")
    assert entry.roots.sent[-1][0]["plan"] == {"a": "1"} and entry.load == {"a": {"1": 1}}

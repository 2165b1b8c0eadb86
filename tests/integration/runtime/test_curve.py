"""CURVE between a Flow's processes, attacked by a foreign process on the same machine.

The foreign process knows the Pea's data and control ports (as a neighbour scanning ports would)
and speaks the Flow's wire format. It pushes a well-formed request and asks the control port for
an answer. With ``secure=True`` the handshake refuses it: the Executor never sees the Document,
nothing answers, the refusal is logged with the foreign address, and the Flow keeps serving.
The same attack against ``secure=False`` must reach the Executor (otherwise the test proves nothing).
"""

import json
import subprocess
import sys
import textwrap
import time

import pytest
import zmq

from jinad_fab import Document, Flow
from jinad_fab.runtime.curve import CurveKeys, flow_keys

pytestmark = pytest.mark.timeout(120)

# the foreign process connects from its own loopback address, so the Pea's log can be checked for it
PLAIN_FROM = "127.0.0.9"
CURVE_FROM = "127.0.0.10"

ATTACKER = textwrap.dedent("""
    import json, sys, time
    import zmq
    from jinad_fab import Document, DocumentArray
    from jinad_fab.wire import Message, new_header

    # source, server key, then the (in, ctrl) ports of every process to attack: each gets the same
    # push and status request, and all the requests wait out one 1.5 s window together
    source, server_key, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
    ctx = zmq.Context()

    def sock(kind):
        s = ctx.socket(kind)
        s.linger = 0
        if server_key != "-":  # a CURVE client with a key of its own, knowing the Flow's server key
            public, secret = zmq.curve_keypair()
            s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server_key.encode(), public, secret
        return s

    targets = []
    for port_in, port_ctrl in zip(ports[::2], ports[1::2]):
        push = sock(zmq.PUSH)
        push.connect(f"tcp://{source}:0;127.0.0.1:{port_in}")
        msg = Message(new_header("f" * 32, "/index"), docs=DocumentArray([Document(text="INJECTED by a stranger")]))
        sent = True
        try:
            push.send_multipart(msg.frames(), flags=zmq.NOBLOCK)
        except zmq.Again:
            sent = False  # no handshake completed: nothing even queued
        req = sock(zmq.REQ)
        req.connect(f"tcp://{source}:0;127.0.0.1:{port_ctrl}")
        req.send_json({"cmd": "status"})
        targets.append({"push": push, "req": req, "sent": sent, "answer": None})
    poller = zmq.Poller()
    for t in targets:
        poller.register(t["req"], zmq.POLLIN)
    deadline = time.monotonic() + 1.5
    waiting = {t["req"]: t for t in targets}
    while waiting and time.monotonic() < deadline:
        for s, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            if s in waiting:
                waiting.pop(s)["answer"] = s.recv_json()
    for t in targets:
        t["push"].close(linger=1000 if t["sent"] else 0)
        t["req"].close()
    ctx.term()
    print(json.dumps([{"sent": t["sent"], "answer": t["answer"]} for t in targets]))
""")


def _attack_all(source: str, targets: list[tuple[int, int]], server_key: str = "-") -> list[dict]:
    """One foreign process attacking every (port_in, port_ctrl) at once; what each one answered."""
    out = subprocess.run([sys.executable, "-c", ATTACKER, source, server_key,
                          *(str(port) for pair in targets for port in pair)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(answers) == len(targets)
    return answers


def _attack(source: str, port_in: int, port_ctrl: int, server_key: str = "-") -> dict:
    (answer,) = _attack_all(source, [(port_in, port_ctrl)], server_key)
    return answer


def _seen(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.mark.parametrize("secure", [True, False], ids=["curve", "plain"])
def test_a_foreign_process_is_refused_with_curve_and_served_without(execs, tmp_path, secure):
    record = tmp_path / "seen.txt"
    f = Flow(secure=secure).add(name="rec", uses_with={"path": str(record)}, **execs("Record"))
    with f:
        assert f.secure is secure
        pea = f._running["rec"].processes[0]
        port_in, port_ctrl = pea.info["port_in"], pea.info["port_ctrl"]
        plain = _attack(PLAIN_FROM, port_in, port_ctrl)
        if secure:
            keyed = _attack(CURVE_FROM, port_in, port_ctrl, f._ctx.curve.server_public)
            time.sleep(0.5)  # anything the attacks pushed would have reached the Executor by now
            assert plain["answer"] is None and keyed["answer"] is None
            assert "INJECTED by a stranger" not in _seen(record)
            # the refusal names the stranger's address, read from the accepted connection; a busy
            # machine can close that connection before the Pea's monitor thread reads its address
            # (the line then says "an unknown peer"), so the stranger tries again, refused each time
            named = f"refused a connection from {PLAIN_FROM}:"
            for _ in range(3):
                if _wait_for(lambda: named in pea.log_tail(40), timeout=2):
                    break
                assert _attack(PLAIN_FROM, port_in, port_ctrl)["answer"] is None
            assert named in pea.log_tail(40)
            assert _wait_for(lambda: f"refused a CURVE handshake from {CURVE_FROM}" in pea.log_tail(40))
            assert "INJECTED by a stranger" not in _seen(record)
        else:
            assert plain["answer"]["ok"] is True  # the control port answered a stranger
            assert _wait_for(lambda: "INJECTED by a stranger" in _seen(record))
        # the Flow keeps serving its own client
        got = f.index([Document(text="from the owner")])
        assert got[0].text == "from the owner"
        assert _wait_for(lambda: "from the owner" in _seen(record))


def test_curve_covers_replicas_shards_heads_and_joins(execs, tmp_path):
    record = tmp_path / "seen.txt"
    f = (Flow(secure=True)
         .add(name="a", parallel=2, **execs("Stamp"))
         .add(name="b", needs="gateway", shards=2, **execs("Stamp"))
         .needs(["a", "b"], name="join", parallel=2)
         .add(name="rec", uses_with={"path": str(record)}, **execs("Record")))
    with f:
        assert f.direct is False  # a CURVE Flow's own client goes through its Gateway too
        got = f.index([Document(id=str(i), text=f"doc {i}") for i in range(40)], request_size=7)
        assert got.ids == [str(i) for i in range(40)]
        # every process of the Flow binds CURVE sockets: a stranger gets nothing from any of them
        procs = [p for pod in f._running.values() for p in pod.processes]
        answers = _attack_all(PLAIN_FROM, [(p.info["port_in"], p.info["port_ctrl"]) for p in procs])
        for p, answer in zip(procs, answers):
            assert answer["answer"] is None, p.label
    assert sorted(_seen(record)) == sorted(f"doc {i}" for i in range(40))


def test_all_loopback_flow_is_plain_by_default(execs):
    with Flow().add(name="a", **execs("Stamp")) as f:
        assert f.secure is False and f.direct is True
        assert f.index([Document(text="x")])[0].text == "x"


def test_keys_never_appear_in_any_process_command_line(execs, tmp_path):
    import psutil

    f = (Flow(secure=True).add(name="a", parallel=2, **execs("Stamp"))
         .add(name="b", shards=2, **execs("Stamp")))
    with f:
        keys = f._ctx.curve
        secrets = {keys.secret, keys.server_secret}
        procs = [p for pod in f._running.values() for p in pod.processes] + [f._gateway]
        assert len(procs) == 6  # 2 replicas, a head, 2 shards, the gateway
        for p in procs:
            cmdline = "\0".join(psutil.Process(p.pid).cmdline())
            assert "--secrets-fd" in cmdline  # it was given keys, just not here
            assert keys.server_secret not in cmdline and keys.public not in cmdline, p.label
            assert not any(s in cmdline for s in secrets)
            assert "curve" not in json.loads(cmdline.split("--args-json\0", 1)[1].split("\0", 1)[0])
        assert f.index([Document(text="y")])[0].text == "y"
        # nor in the Flow's YAML, nor in anything its processes logged
        f.save_config(str(tmp_path / "flow.yml"))
        saved = (tmp_path / "flow.yml").read_text()
        assert "secure: true" in saved and not any(s in saved for s in secrets)
        assert not any(s in p.log_tail(40) for p in procs for s in secrets)


def test_keys_repr_hides_the_secrets():
    keys = flow_keys(["a", "b"])["a"]
    assert keys.secret not in repr(keys) and keys.server_secret not in repr(keys)
    again = CurveKeys.from_dict(json.loads(json.dumps(keys.to_dict())))
    assert again.secret == keys.secret and len(again.allowed) == 2


def test_a_client_key_of_the_flow_is_admitted_and_any_other_refused():
    from jinad_fab.errors import RuntimeFailure
    from jinad_fab.runtime.sockets import bind, ctrl_request, make_context

    keys = flow_keys(["server", "member"])
    mine = flow_keys(["outsider"])["outsider"]  # knows the server's public key, holds a key of its own
    other = CurveKeys(keys["server"].server_public, "x" * 40, mine.public, mine.secret, ())
    server = make_context(keys["server"])
    sock, port = bind(server, zmq.REP, "127.0.0.1")
    member, outsider = make_context(keys["member"]), make_context(other)
    try:
        import threading

        def answer_once():
            if sock.poll(5000):
                sock.send_json({"ok": True, "echo": sock.recv_json()})

        t = threading.Thread(target=answer_once)
        t.start()
        with pytest.raises(RuntimeFailure):
            ctrl_request(outsider, f"tcp://127.0.0.1:{port}", {"cmd": "status"}, timeout=1.5)
        assert ctrl_request(member, f"tcp://127.0.0.1:{port}", {"cmd": "status"}, timeout=5)["ok"] is True
        t.join(5)
    finally:
        sock.close(linger=0)
        for ctx in (server, member, outsider):
            ctx.destroy(linger=0)


def test_curve_is_on_by_default_only_when_a_pod_runs_on_another_host():
    # `advertise` is the address peers on other hosts connect back to: None when every Pod runs here
    f = Flow().add(name="a")
    assert f._curve_keys(["a"], advertise=None) is None
    keys = f._curve_keys(["a"], advertise="10.1.2.3")
    assert set(keys) == {"a", "gateway", "/flow"}
    assert len({k.public for k in keys.values()}) == 3 and len({k.server_public for k in keys.values()}) == 1
    assert Flow(secure=False).add(name="a")._curve_keys(["a"], advertise="10.1.2.3") is None
    assert Flow(secure=True).add(name="a")._curve_keys(["a"], advertise=None) is not None

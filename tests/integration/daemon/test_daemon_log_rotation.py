"""Per-object logs rotate at a size, and following one goes on across rotations with no line lost
or repeated, while the object itself keeps appending through its own descriptor."""

from __future__ import annotations

import json
import threading
import time

from tests.support.daemons import active_workspace, wait_state

LINES = 12000
EXECUTOR = f"""import os, threading, time
from jinad_fab import Executor


def chatter():
    while not os.path.exists("go"):
        time.sleep(0.01)
    for i in range({LINES}):
        print("line %d %s" % (i, "x" * 200), flush=True)
        if i % 20 == 0:
            time.sleep(0.01)


class Chatty(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        threading.Thread(target=chatter, daemon=True).start()
"""


def test_a_followed_log_rotates_without_losing_or_repeating_a_line(daemon_factory):
    max_bytes, backups = 64 * 1024, 3
    jinad = daemon_factory(env={"JINAD_LOG_MAX_BYTES": str(max_bytes), "JINAD_LOG_BACKUPS": str(backups),
                                "JINAD_RECONCILE_INTERVAL": "0.1"})
    with jinad.client() as c:
        wid = active_workspace(c, {"chatty.py": EXECUTOR})
        r = c.post("/pods", params={"workspace_id": wid},
                   json={"name": "chatty", "uses": "Chatty", "py_modules": ["chatty.py"]})
        assert r.status_code == 201, r.text
        pod = r.json()["id"]
        got: list[int] = []
        connected = threading.Event()

        def follow() -> None:
            with jinad.client() as fc, fc.stream("GET", f"/logs/{pod}", params={"follow": True},
                                                 timeout=120) as resp:
                connected.set()
                for line in resp.iter_lines():
                    msg = json.loads(line).get("msg", "")
                    if msg.startswith("line "):
                        got.append(int(msg.split()[1]))
                        if got[-1] == LINES - 1:
                            return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert connected.wait(30)
        (jinad.home / "workspaces" / wid / "files" / "go").write_text("")
        reader.join(120)
        assert not reader.is_alive(), f"follow stopped after {len(got)} lines"
        assert got == list(range(LINES)), (len(got), len(set(got)))

        log = jinad.home / "logs" / f"{pod}.log"
        want = [f"{log.name}.{i}" for i in range(1, backups + 1)] + [f"{log.name}.rot"]

        def copies() -> list[str]:
            return sorted(p.name for p in log.parent.glob(f"{log.name}.*"))

        # the housekeeping rotates on its own clock: a busy machine may have rotated only twice by
        # the time the last line was read, and the rest of the live part rotates on the next rounds
        deadline = time.monotonic() + 20
        while copies() != want and time.monotonic() < deadline:
            time.sleep(0.1)
        assert copies() == want, copies()
        written = LINES * 210

        def on_disk() -> int:
            return sum(p.stat().st_blocks * 512 for p in (log, *log.parent.glob(f"{log.name}.*")))

        deadline = time.monotonic() + 20  # the housekeeping rotates within an interval or so
        while on_disk() > written / 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert on_disk() < written / 2, on_disk()
        assert log.stat().st_size >= written  # never truncated: the object's appends all landed
        tail = [json.loads(x)["msg"].split()[1] for x in c.get(f"/logs/{pod}", params={"tail": 3}).text.splitlines()]
        assert tail == [str(i) for i in range(LINES - 3, LINES)]
        assert c.delete(f"/pods/{pod}").status_code == 200
        assert c.delete(f"/workspaces/{wid}").status_code == 204
        deadline = time.monotonic() + 10
        while list(log.parent.glob(f"{log.name}*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(log.parent.glob(f"{log.name}*")) == []


def test_tail_and_offset_read_across_the_copies(daemon_factory):
    jinad = daemon_factory(env={"JINAD_LOG_MAX_BYTES": "4096", "JINAD_RECONCILE_INTERVAL": "0.1"})
    with jinad.client() as c:
        wid = active_workspace(c, {"a.txt": "x"})
        r = c.post("/peas", params={"workspace_id": wid}, json={"name": "p", "uses": "_pass"})
        assert r.status_code == 201, r.text
        pea = r.json()["id"]
        wait_state(c, f"/peas/{pea}", {"RUNNING"})
        log = jinad.home / "logs" / f"{pea}.log"
        with open(log, "a") as fh:  # as the object would write: appended to the file it holds
            for i in range(200):
                fh.write(json.dumps({"msg": f"n {i}", "pad": "y" * 100}) + "\n")
        deadline = time.monotonic() + 30
        while not (log.parent / f"{log.name}.1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = [json.loads(x)["msg"] for x in c.get(f"/logs/{pea}").text.splitlines()]
        numbered = [m for m in before if m.startswith("n ")]
        assert numbered and numbered == [f"n {i}" for i in range(200 - len(numbered), 200)]
        everything = len(before)
        tail = [json.loads(x)["msg"] for x in c.get(f"/logs/{pea}", params={"tail": 60}).text.splitlines()]
        assert tail == [f"n {i}" for i in range(140, 200)]
        # an offset counts every line the log ever had, so a reconnecting reader resumes exactly
        total = int(json.loads((log.parent / f"{log.name}.rot").read_text())["lines"]) + len(
            log.read_bytes().lstrip(b"\0").splitlines())
        rest = [json.loads(x)["msg"] for x in c.get(f"/logs/{pea}", params={"offset": total - 5}).text.splitlines()]
        assert rest == [f"n {i}" for i in range(195, 200)], (rest, everything)

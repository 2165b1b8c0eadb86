"""Reading a big log costs what is returned, not the file: tail reads backwards, offset streams."""

from __future__ import annotations

import json
import threading
import time

import psutil

OBJECT_ID = "jflow-" + "0" * 31 + "2"


def test_tail_and_offset_on_a_big_log_stay_small_in_memory(jinad):
    path = jinad.home / "logs" / f"{OBJECT_ID}.log"
    n = 400_000
    with open(path, "wb") as fh:  # ~80 MB
        for i in range(n):
            fh.write((json.dumps({"i": i, "msg": "x" * 170}) + "\n").encode())
        fh.write(b"a partial line")
    daemon = psutil.Process(jinad.proc.pid)
    rss0 = daemon.memory_info().rss
    peak = rss0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, daemon.memory_info().rss)
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    try:
        with jinad.client() as c:
            r = c.get(f"/logs/{OBJECT_ID}", params={"tail": 3})
            assert [json.loads(x)["i"] for x in r.text.splitlines()] == [n - 3, n - 2, n - 1]
            with c.stream("GET", f"/logs/{OBJECT_ID}", params={"offset": n - 2}) as s:
                assert [json.loads(x)["i"] for x in s.iter_lines()] == [n - 2, n - 1]
            with c.stream("GET", f"/logs/{OBJECT_ID}") as s:
                count = sum(1 for _ in s.iter_lines())
            assert count == n  # the partial line is not served
    finally:
        stop.set()
        t.join()
    growth = (peak - rss0) / 2**20
    assert growth < 32, f"the daemon grew by {growth:.0f} MiB reading an 80 MB log"

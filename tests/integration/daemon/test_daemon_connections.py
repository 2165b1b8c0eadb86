"""Connections are bounded: a client that never finishes its headers is closed, idle keep-alive
connections are closed, and past the concurrency limit the daemon answers 503."""

from __future__ import annotations

import socket
import threading
import time

import httpx


def _closed(sock: socket.socket, deadline: float, trickle: bool) -> bool:
    """True once the daemon closes ``sock`` (before ``deadline``); a trickler keeps sending a header byte."""
    sock.settimeout(0.25)
    sent = 0
    header = b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    while time.monotonic() < deadline:
        try:
            if trickle and sent < len(header):
                sock.send(header[sent:sent + 1])
                sent += 1
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_slow_and_idle_connections_are_closed(daemon_factory):
    d = daemon_factory(extra=["--header-timeout", "2", "--keep-alive-timeout", "1"])
    socks = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(40)]
    try:
        assert httpx.get(d.url + "/alive").status_code == 200  # served while they are held
        results: list[bool] = [False] * len(socks)
        deadline = time.monotonic() + 30  # generous: without a header timeout they stay open for ever

        def watch(i: int) -> None:
            results[i] = _closed(socks[i], deadline, trickle=i % 2 == 1)

        threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(socks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(results), f"{results.count(False)} of {len(socks)} slow connections were never closed"
        # a keep-alive connection that went idle after a request is closed too
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            s.sendall(b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            assert _closed(s, time.monotonic() + 30, trickle=False)
    finally:
        for s in socks:
            s.close()


def test_past_the_concurrency_limit_the_daemon_answers_503(daemon_factory):
    d = daemon_factory(extra=["--max-connections", "8", "--header-timeout", "60"])
    held = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(10)]
    try:
        # the server counts a connection once it accepted it, which a busy machine may not have done
        # yet for all ten: a request may pass until then, none once they are all in
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=10) as http:
            while (r := http.get(d.url + "/alive", headers={"connection": "close"})).status_code == 200:
                assert time.monotonic() < deadline, "never 503 with 10 connections held and a limit of 8"
                time.sleep(0.05)
        assert r.status_code == 503
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 30
    while httpx.get(d.url + "/alive").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)

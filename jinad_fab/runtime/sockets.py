"""Small ZeroMQ helpers shared by Peas, Pods, the Gateway and the Client."""

from __future__ import annotations

import zmq

from ..errors import RuntimeFailure


def signal_wakeup_fd() -> int:
    """A pipe that receives a byte whenever a signal arrives; poll it next to the sockets.

    Python retries an interrupted poll, so without this a SIGTERM is only noticed at the
    poll's next timeout.
    """
    import os
    import signal

    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r


def drain(fd: int) -> None:
    import os

    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def make_context() -> zmq.Context:
    return zmq.Context()


def bind(ctx: zmq.Context, kind: int, host: str, port: int = 0) -> tuple[zmq.Socket, int]:
    """Bind a socket on host:port (0 = a free port chosen by the OS); returns it and the port."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if kind in (zmq.PULL, zmq.ROUTER):
        s.setsockopt(zmq.RCVHWM, 0)
    if kind == zmq.ROUTER:
        s.setsockopt(zmq.ROUTER_MANDATORY, 0)
        s.setsockopt(zmq.SNDHWM, 0)
    try:
        if port:
            s.bind(f"tcp://{host}:{port}")
        else:
            port = s.bind_to_random_port(f"tcp://{host}")
    except zmq.ZMQError as exc:
        s.close(linger=0)
        raise RuntimeFailure(f"cannot bind tcp://{host}:{port or '*'}: {exc}") from exc
    return s, port


def push_targets(ctx: zmq.Context, old: list[zmq.Socket], targets: list[list[str]],
                 linger_ms: int = 0) -> list[zmq.Socket]:
    """Replace `old` PUSH sockets with one per target, each connected to all of the target's
    addresses (replicas: ZeroMQ load-balances between them); sends never block (no HWM)."""
    for s in old:
        s.close(linger=0)
    out = []
    for addrs in targets:
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, linger_ms)
        s.setsockopt(zmq.SNDHWM, 0)
        for a in addrs:
            s.connect(a)
        out.append(s)
    return out


def ctrl_request(ctx: zmq.Context, address: str, cmd: dict, timeout: float = 10.0) -> dict:
    """One request/reply on a control socket, with a deadline (a dead peer never hangs us)."""
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    s.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    try:
        s.connect(address)
        s.send_json(cmd)
        return s.recv_json()
    except zmq.Again as exc:
        raise RuntimeFailure(f"no answer from {address} to {cmd.get('cmd')!r} within {timeout:g}s") from exc
    finally:
        s.close(linger=0)


def connect_host(bind_host: str) -> str:
    """The address peers on this machine use for a socket bound on `bind_host`."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "", "*") else bind_host

"""`jinad-fab hosts -i INV --json` against N real `jinad`s on loopback; prints a table.

    python benchmarks/cli_hosts.py [--fleet 100] [--rounds 7]

Starts 1 + N daemons (each a real `jinad` process: its own port, home, SQLite store and uvicorn
server), writes an inventory for the first one and another for the N, then times, interleaved in
rounds: `jinad-fab --help` (the reference: the CLI's start-up alone), `hosts` on 1 host, `hosts`
on N hosts, and `hosts` on 1 host with an empty inventory cache (Ansible parses the inventory).
Wall time and the command's own CPU time (user + sys of the process and its children) are shown;
on a loaded machine the CPU time is the steadier figure.

The daemons share a small footprint: one launcher process imports `jinad` once and forks each
daemon from it (copy-on-write memory), then each runs the `jinad` entry point with its own
arguments. They live in one process group that is killed at the end, failure or not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import httpx

TARGETS_S = {"hosts, 1 host": 0.5, "hosts, {n} hosts": 1.5}
# issue 19, measured earlier on this kind of machine (not in this run)
EARLIER_S = {"jinad-fab --help": 0.56, "hosts, 1 host": 1.6}

LAUNCHER = textwrap.dedent("""
    import ctypes, os, signal, socket, sys
    import jinad_fab.cli.daemon, jinad_fab.daemon.app, uvicorn  # imported once, shared by every fork

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the benchmark
    home_root, count = sys.argv[1], int(sys.argv[2])

    def serve(i):
        home = os.path.join(home_root, str(i))
        log = os.open(home + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # the port is chosen just before the bind, and chosen again if another process took it in
        # between (exit 2): on a busy machine a port picked minutes earlier is often gone
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            with open(home + ".port.tmp", "w") as f:
                f.write(str(port))
            os.replace(home + ".port.tmp", home + ".port")
            try:
                jinad_fab.cli.daemon.main(["--port", str(port), "--home", home, "--log-level", "warning"])
            except SystemExit as exc:
                if exc.code != 2:
                    break
        os._exit(0)

    children = []
    for i in range(count):
        pid = os.fork()
        if pid == 0:
            libc.prctl(1, signal.SIGKILL)  # die with the launcher
            serve(i)
        children.append(pid)
    for _ in children:
        os.wait()
""")


def _wait_alive(homes: pathlib.Path, count: int, launcher: subprocess.Popen, timeout: float) -> list[int]:
    """The port of each daemon, in order, once every one answers /alive."""
    deadline = time.monotonic() + timeout
    alive: dict[int, int] = {}
    with httpx.Client(timeout=2) as c:
        while len(alive) < count:
            if launcher.poll() is not None:
                raise SystemExit(f"the jinad launcher exited with code {launcher.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{count - len(alive)} of {count} jinads did not answer in {timeout:g}s")
            for i in range(count):
                if i in alive:
                    continue
                with contextlib.suppress(OSError, ValueError):
                    port = int((homes / f"{i}.port").read_text())
                    with contextlib.suppress(httpx.HTTPError):
                        if c.get(f"http://127.0.0.1:{port}/alive").status_code == 200:
                            alive[i] = port
            time.sleep(0.2)
    return [alive[i] for i in range(count)]


def _inventory(path: pathlib.Path, ports: list[int], token: str) -> str:
    lines = ["all:", "  vars:", "    ansible_connection: local", "    jinad_address: 127.0.0.1",
             f"    jinad_token: {token}", "  children:", "    fleet:", "      hosts:"]
    for i, port in enumerate(ports):
        lines += [f"        jinad-{i:03d}:", f"          jinad_port: {port}"]
    path.mkdir(parents=True)
    (path / "hosts.yml").write_text("\n".join(lines) + "\n")
    return str(path / "hosts.yml")


def _timed(argv: list[str], env: dict[str, str], expect_hosts: int | None) -> tuple[float, float]:
    """Wall and CPU seconds of one run (CPU: the reaped child's user + sys); checks every host answered."""
    before = os.times()
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - t
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    if expect_hosts is not None:
        rows = json.loads(proc.stdout)
        if len(rows) != expect_hosts or not all(r["ok"] for r in rows):
            raise SystemExit(f"expected {expect_hosts} answering hosts, got {rows}")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fleet", type=int, default=100, help="daemons in the big inventory")
    ap.add_argument("--rounds", type=int, default=7)
    ns = ap.parse_args()
    repo = pathlib.Path(__file__).resolve().parent.parent
    token = "bench-" + os.urandom(12).hex()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("JINAD_", "ANSIBLE_"))}
    base_env["PYTHONPATH"] = f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    with tempfile.TemporaryDirectory(prefix="jinad-cli-bench-") as tmp:
        root = pathlib.Path(tmp)
        (root / "homes").mkdir()
        started = time.perf_counter()
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(root / "homes"), str(1 + ns.fleet)],
            env=dict(base_env, JINAD_TOKEN=token), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=open(root / "launcher.log", "wb"))  # noqa: SIM115
        try:
            ports = _wait_alive(root / "homes", 1 + ns.fleet, launcher, timeout=60 + 3 * (1 + ns.fleet))
            took = time.perf_counter() - started
            one = _inventory(root / "one", ports[:1], token)
            fleet = _inventory(root / "fleet", ports[1:], token)
            env = dict(base_env, JINAD_FAB_CACHE_DIR=str(root / "cache"))
            cli = [sys.executable, "-m", "jinad_fab.cli.main"]
            cases = {
                "jinad-fab --help": (cli + ["--help"], None, None),
                "hosts, 1 host": (cli + ["hosts", "-i", one, "--json"], 1, None),
                f"hosts, {ns.fleet} hosts": (cli + ["hosts", "-i", fleet, "--json"], ns.fleet, None),
                "hosts, 1 host, no inventory cache": (cli + ["hosts", "-i", one, "--json"], 1, "fresh"),
            }
            for argv, hosts, _ in cases.values():  # warm-up: page cache, and the inventory cache
                _timed(argv, env, hosts)
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
            for r in range(ns.rounds):
                for name, (argv, hosts, cache) in cases.items():
                    run_env = dict(env, JINAD_FAB_CACHE_DIR=str(root / f"fresh-{r}")) if cache else env
                    results[name].append(_timed(argv, run_env, hosts))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGTERM)
            try:
                launcher.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
    ref = statistics.median(w for w, _ in results["jinad-fab --help"])
    print(f"{1 + ns.fleet} jinads started in {took:.1f}s; {ns.rounds} interleaved rounds")
    print(f"{'command':<36}{'wall p50 s':>11}{'min s':>8}{'cpu p50 s':>10}{'/ --help':>9}{'target s':>9}"
          f"{'earlier s*':>11}")
    for name, xs in results.items():
        walls, cpus = [w for w, _ in xs], [c for _, c in xs]
        key = name.replace(str(ns.fleet), "{n}")
        target = TARGETS_S.get(key)
        earlier = EARLIER_S.get(name)
        print(f"{name:<36}{statistics.median(walls):>11.2f}{min(walls):>8.2f}{statistics.median(cpus):>10.2f}"
              f"{statistics.median(walls) / ref:>8.2f}x{target if target else '-':>9}"
              f"{earlier if earlier else '-':>11}")
    print("* issue 19's figures before this work (hosts on 1 daemon 1.6 s, --help 0.56 s), not this run")
    la = os.getloadavg()
    print(f"load average: {la[0]:.1f} {la[1]:.1f} {la[2]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

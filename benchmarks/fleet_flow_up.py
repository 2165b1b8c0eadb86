"""`jinad-fab flow up` over three real `jinad`s on loopback: deploy, re-apply, roll one Pod, down.

    python benchmarks/fleet_flow_up.py [--rounds 3]

Starts three daemons (a `gpu` host and two `cpu` hosts of one inventory, each its own process,
home, token and store) and a Flow `encode (cpu) -> _index (gpu) -> tail (cpu)` with its Gateway
on a cpu host. Every command is a fresh controller process, as an operator runs it. Per round:

* `flow up` of a new deployment (round 1 on fresh daemons: cold; later rounds: warm daemons);
* `flow up` again with nothing changed (`changed=0`; the target is under 2 s);
* `flow up` with the encoder's `uses_with` changed (a rolling update of that Pod alone);
* `flow down -y`.

The reference, timed in the same rounds: `jinad-fab hosts -i INV --json` (the same CLI start-up
and a fan-out to the three daemons). On a loaded machine compare each row with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import httpx
import yaml

# The workload this benchmark measures, kept here rather than imported from tests/support/fleet_flows.py
# (the tests' copy): a benchmark is a plain script that never imports the test tree, and its figures
# stay comparable between runs only while its workload does not change with the tests' needs.
ENCODER = textwrap.dedent("""
    import zlib
    import numpy as np
    from jinad_fab import Executor, requests

    class HashEncoder(Executor):
        def __init__(self, version="v1", **kwargs):
            super().__init__(**kwargs)
            self.version = version

        @requests
        def encode(self, docs, parameters):
            for d in docs:
                rng = np.random.default_rng(zlib.crc32(d.text.encode()))
                d.embedding = rng.standard_normal(16).astype("float32")
                d.tags["version"] = self.version
""")

FLOW = """!Flow
version: '1'
with:
  protocol: http
gateway:
  hosts: cpu
pods:
  - name: encode
    uses: HashEncoder
    uses_with: {{version: {version}}}
    py_modules: [encoder.py]
    hosts: cpu
  - name: index
    uses: _index
    hosts: gpu
  - name: tail
    uses: _pass
    hosts: cpu
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, cwd: pathlib.Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "jinad_fab.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=900)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"jinad-fab {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return took, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    daemons: list[subprocess.Popen] = []
    hosts: dict[str, dict] = {}
    try:
        for name in ("g1", "c1", "c2"):
            port, token = _free_port(), secrets.token_hex(16)
            (root / f"{name}.token").write_text(token)
            (root / f"{name}.token").chmod(0o600)
            env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD")}
            with open(root / f"{name}.log", "wb") as log:
                daemons.append(subprocess.Popen(
                    [sys.executable, "-m", "jinad_fab.cli.daemon", "--port", str(port), "--home", str(root / name),
                     "--token-file", str(root / f"{name}.token"), "--log-level", "warning"],
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            hosts[name] = {"jinad_address": "127.0.0.1", "jinad_port": port, "jinad_token": token}
        deadline = time.monotonic() + 60
        for h in hosts.values():
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{h['jinad_port']}/alive", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("a jinad did not start")
                time.sleep(0.1)
        inv = root / "inv" / "hosts.yml"
        inv.parent.mkdir()
        inv.write_text(yaml.safe_dump({"all": {"children": {
            "gpu": {"hosts": {"g1": {**hosts["g1"], "jinad_gpus": 1}}},
            "cpu": {"hosts": {"c1": hosts["c1"], "c2": hosts["c2"]}},
        }}}))
        proj = root / "proj"
        proj.mkdir()
        (proj / "encoder.py").write_text(ENCODER)
        rows: dict[str, list[float]] = {}

        def add(key: str, value: float) -> None:
            rows.setdefault(key, []).append(value)

        for r in range(ns.rounds):
            name = f"bench{r}"
            (proj / "flow.yml").write_text(FLOW.format(version="v1"))
            add("reference: jinad-fab hosts (3 daemons)", _cli("hosts", "-i", str(inv), "--json", cwd=proj)[0])
            took, out = _cli("flow", "up", "flow.yml", "-i", str(inv), "--name", name, "--json", cwd=proj)
            info = json.loads(out.strip().splitlines()[-1])
            assert info["changed"] == 1, info
            add("flow up, cold daemons (first round)" if r == 0 else "flow up, warm daemons", took)
            took, out = _cli("flow", "up", "flow.yml", "-i", str(inv), "--name", name, "--json", cwd=proj)
            assert json.loads(out.strip().splitlines()[-1])["changed"] == 0
            add("flow up again, nothing changed (changed=0)", took)
            (proj / "flow.yml").write_text(FLOW.format(version=f"v{r + 2}"))
            took, out = _cli("flow", "up", "flow.yml", "-i", str(inv), "--name", name, "--json", cwd=proj)
            rolled = json.loads(out.strip().splitlines()[-1])
            assert rolled["action"] == "rolled encode" and rolled["flow_id"] == info["flow_id"], rolled
            add("flow up, one Pod's uses_with changed (rolling update)", took)
            add("flow down -y", _cli("flow", "down", name, "-i", str(inv), "-y", cwd=proj)[0])
        load = os.getloadavg()
        width = max(len(k) for k in rows)
        print(f"\n{'what':<{width}}  {'median s':>9}  {'min s':>7}  runs")
        for key, values in rows.items():
            print(f"{key:<{width}}  {statistics.median(values):>9.2f}  {min(values):>7.2f}  {len(values)}")
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
              "every row is a fresh controller process")
    finally:
        for d in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.pid, 9)
            d.wait(10)
        # what the daemons started (Flows, Pods, zygotes) lives in sessions of its own, under our homes
        import shutil

        import psutil

        mine = []
        for p in psutil.process_iter(["cmdline", "cwd"]):
            with contextlib.suppress(psutil.Error):
                if str(root) in " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or ""):
                    mine.append(p)
        for p in mine:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(mine, timeout=10)

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
